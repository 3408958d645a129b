"""The AWS Load Balancer Controller's Helm values (chart aws-load-balancer-controller 3.5.0 from aws/eks-charts).

Every key below is in the chart's values.yaml at 3.5.0; the chart has no values schema, so a misspelt key would
be ignored silently, and tests check each key against that file. Why each is set:
- `region` and `vpcId`: the controller otherwise asks the instance metadata service, which the nodes answer only
  to the host network (hop limit 1, components/karpenter/nodes.py), and fails at start ("failed to introspect
  region from EC2Metadata"; kubernetes-sigs/aws-load-balancer-controller docs/deploy/installation.md).
- `enableServiceMutatorWebhook: false`: that webhook (failurePolicy Fail) intercepts every Service created in the
  cluster to default its loadBalancerClass, and fails them all while the controller is not ready yet, which on a
  first deploy races every other release. The platform's one load-balanced Service names its class itself.
- `createIngressClassResource`/`ingressClassParams.create: false` and `disableIngressValidation`: the platform
  makes no Ingress; without these the chart adds an `alb` IngressClass and a webhook validating every Ingress.
- `keepTLSSecret`: the chart generates a new webhook CA on every render unless it reuses its Secret
  (aws/eks-charts#555: an upgrade then failed with x509 errors).
- `defaultTargetType: ip`: targets are pod IPs (the VPC CNI gives each pod one), no NodePorts.
- `defaultTags`: every AWS object the controller creates (NLB, target groups, security groups) carries the
  stack's cost-allocation tags.
"""

from __future__ import annotations

from typing import Any

from components.cost_tags import cost_tags
from components.helm_chart import HelmChart
from components.monitoring.values import SYSTEM_NODE_SELECTOR

NAMESPACE = "kube-system"
RELEASE_NAME = "aws-load-balancer-controller"
SERVICE_ACCOUNT = "aws-load-balancer-controller"
CHART = HelmChart(
    name="aws-load-balancer-controller", repo="https://aws.github.io/eks-charts", version="3.5.0"
)
# The class the controller serves Services of (its `loadBalancerClass` default, docs/guide/service/nlb.md).
LOAD_BALANCER_CLASS = "service.k8s.aws/nlb"
# Two replicas (the chart's default) with leader election: a drained node leaves one to serve the webhooks.
REPLICAS = 2
# The chart sets none; a controller reconciling the platform's one Service needs little.
RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}


def controller_values(
    cluster_name: str, region: str, vpc_id: str, role_arn: str, stack: str
) -> dict[str, Any]:
    return {
        "clusterName": cluster_name,
        "region": region,
        "vpcId": vpc_id,
        "replicaCount": REPLICAS,
        "serviceAccount": {
            "create": True,
            "name": SERVICE_ACCOUNT,
            "annotations": {"eks.amazonaws.com/role-arn": role_arn},
        },
        # Fargate takes only Karpenter's namespace and CoreDNS, and GPU nodes are tainted.
        "nodeSelector": SYSTEM_NODE_SELECTOR,
        "resources": RESOURCES,
        "podDisruptionBudget": {"maxUnavailable": 1},
        "defaultTargetType": "ip",
        "enableServiceMutatorWebhook": False,
        "createIngressClassResource": False,
        "ingressClassParams": {"create": False},
        "webhookConfig": {"disableIngressValidation": True},
        "keepTLSSecret": True,
        "defaultTags": cost_tags(stack, component="load-balancer"),
        "serviceMonitor": {"enabled": True},
    }

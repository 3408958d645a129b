"""LoadBalancerController: the AWS Load Balancer Controller (its IRSA role and pinned Helm release) and the one
Service it turns into the endpoint's Network Load Balancer.

Installed only with llm:serviceType LoadBalancer. The controller's pods run on the system pool, so the release
waits for Karpenter; its ServiceMonitor needs kube-prometheus-stack's CRDs. Order matters both ways:
- the Service is created after the release, which waits for the controller to be ready, so no other controller
  (the in-tree cloud provider ignores Services with a loadBalancerClass) ever takes it;
- on destroy the Service goes first: the controller deletes the NLB, its target groups and security groups,
  then drops its finalizer (`service.k8s.aws/resources`). Were the controller or its role gone first, the
  Service would hang on the finalizer and the NLB's interfaces would keep the subnets from being deleted.
The chart installs its CRDs (TargetGroupBinding and others, in its crds/ folder) on the first install only, as
Helm does; a chart upgrade that changes them needs them applied first (the controller's installation guide).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.cost_tags import cost_tags
from components.helm_chart import release_args
from components.iam import arn_partition, service_account_trust_policy
from components.ingress.iam import controller_policy
from components.ingress.manifests import Backend, LoadBalancerSettings, endpoint_service
from components.ingress.values import (
    CHART,
    NAMESPACE,
    RELEASE_NAME,
    SERVICE_ACCOUNT,
    controller_values,
)


@dataclass
class LoadBalancerControllerArgs:
    stack: str
    stack_name: str
    region: str
    settings: LoadBalancerSettings
    # The pods the NLB sends connections to.
    backend: Backend
    provider: k8s.Provider
    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    public_subnet_ids: pulumi.Input[Sequence[str]]
    oidc_provider_arn: pulumi.Input[str]
    oidc_provider_url: pulumi.Input[str]
    # The kube-prometheus-stack release, whose ServiceMonitor CRD the controller's monitor needs.
    monitoring_release: pulumi.Resource
    # What must run before the controller's pods can (Karpenter and its NodePools).
    depends_on: Sequence[pulumi.Resource] = ()
    # What must exist before the Service: the backend's namespace.
    backend_depends_on: Sequence[pulumi.Resource] = ()


class LoadBalancerController(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    service: k8s.core.v1.Service
    # The NLB's DNS name, once the controller has made it: point the endpoint's hostname at it (CNAME).
    hostname: pulumi.Output[str]

    def __init__(
        self, name: str, args: LoadBalancerControllerArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("selfhost:index:LoadBalancerController", name, None, opts)
        role, grant = self._role(name, args)
        values = pulumi.Output.all(args.cluster_name, args.vpc_id, role.arn).apply(
            lambda v: controller_values(v[0], args.region, v[1], v[2], args.stack)
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            release_args(RELEASE_NAME, CHART, NAMESPACE, values),
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=[*args.depends_on, args.monitoring_release, grant],
            ),
        )
        manifest = endpoint_service(
            args.settings, args.backend, pulumi.Output.from_input(args.public_subnet_ids).apply(",".join)
        )
        self.service = k8s.core.v1.Service(
            f"{name}-endpoint-service",
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=[self.release, *args.backend_depends_on],
            ),
        )
        self.hostname = self.service.status.apply(_load_balancer_hostname)
        self.register_outputs({"release": self.release.name, "hostname": self.hostname})

    def _role(
        self, name: str, args: LoadBalancerControllerArgs
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicyAttachment]:
        """The controller's IRSA role with upstream's policy, as a managed policy the way upstream installs it
        (about 5,200 of the 6,144 characters one may hold)."""
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            name=f"{args.stack_name}-load-balancer-controller",
            description="AWS Load Balancer Controller (IRSA)",
            assume_role_policy=pulumi.Output.all(args.oidc_provider_arn, args.oidc_provider_url).apply(
                lambda v: json.dumps(service_account_trust_policy(v[0], v[1], NAMESPACE, SERVICE_ACCOUNT))
            ),
            tags=cost_tags(args.stack, component="load-balancer"),
            opts=child,
        )
        policy = aws.iam.Policy(
            f"{name}-policy",
            description="AWS Load Balancer Controller v3.5.0 (upstream iam_policy.json)",
            policy=pulumi.Output.from_input(args.oidc_provider_arn).apply(
                lambda arn: json.dumps(controller_policy(arn_partition(arn)))
            ),
            tags=cost_tags(args.stack, component="load-balancer"),
            opts=child,
        )
        grant = aws.iam.RolePolicyAttachment(
            f"{name}-policy-attachment", role=role.name, policy_arn=policy.arn, opts=child
        )
        return role, grant


def _load_balancer_hostname(status: k8s.core.v1.outputs.ServiceStatus | None) -> str:
    """The NLB's DNS name from the Service's status, or "" until the controller has written it."""
    ingress = status.load_balancer.ingress if status and status.load_balancer else None
    return (ingress[0].hostname or "") if ingress else ""

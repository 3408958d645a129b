"""Values for the karpenter chart (charts/karpenter/values.yaml at v1.14.1); every key exists there."""

from __future__ import annotations

from typing import Any

KARPENTER_VERSION = "1.14.1"
CHART = "oci://public.ecr.aws/karpenter/karpenter"
# Helm installs a chart's crds/ only on first install and never upgrades them; upstream's upgrade guide
# manages the CRDs with this separate chart so that a version bump also updates them.
CRD_CHART = "oci://public.ecr.aws/karpenter/karpenter-crd"
NAMESPACE = "karpenter"
SERVICE_ACCOUNT = "karpenter"

# The getting-started guide's controller size: 1 vCPU / 1Gi requests = limits. Fargate adds 256 MB and
# rounds up, so each of the chart's 2 replicas is billed as 1 vCPU / 2 GB.
CONTROLLER_RESOURCES = {"cpu": "1", "memory": "1Gi"}


def helm_values(
    cluster_name: str, cluster_endpoint: str, queue_name: str, controller_role_arn: str, region: str
) -> dict[str, Any]:
    """Values for the karpenter chart; every key exists in the chart's values.yaml."""
    return {
        "settings": {
            "clusterName": cluster_name,
            "clusterEndpoint": cluster_endpoint,
            # The queue's name, not its URL or ARN (chart: "the name of the SQS queue").
            "interruptionQueue": queue_name,
        },
        "serviceAccount": {
            # Named explicitly because the IRSA trust policy names this exact subject.
            "name": SERVICE_ACCOUNT,
            "annotations": {"eks.amazonaws.com/role-arn": controller_role_arn},
        },
        "controller": {
            "resources": {"requests": CONTROLLER_RESOURCES, "limits": CONTROLLER_RESOURCES},
            # Fargate has no instance metadata to read the region from; the chart's own example of `env`.
            "env": [{"name": "AWS_REGION", "value": region}],
        },
        # The controller needs DNS only for AWS endpoints (STS, EC2, SQS, SSM, pricing); it reaches the API
        # server by the in-cluster service IP. `Default` resolves through the VPC resolver, so Karpenter
        # starts even while CoreDNS is still pending on its Fargate profile, or has been moved to nodes
        # that only Karpenter can buy (troubleshooting.md, "DNS chicken-and-egg").
        "dnsPolicy": "Default",
        # The chart default, stated because the PodDisruptionBudget and zone spread assume two.
        "replicas": 2,
    }

"""Who may reach the cluster and how: admin access entries, the endpoint's CIDRs, the Fargate
profile's selectors and pod execution role, control-plane logs,"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi_aws as aws
import pulumi_eks as eks

from components.iam import arn_partition

# Control-plane log streams sent to CloudWatch (EKS user guide, "Send control plane logs to CloudWatch
# Logs"); controllerManager and scheduler are left out as rarely read and billed per GB ingested.
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator")
# EKS writes to this group (same guide); creating it first bounds its retention, which is forever otherwise.
LOG_RETENTION_DAYS = 30
# EKS CoreDNS pods carry this label (EKS user guide, "Get started with AWS Fargate": the CoreDNS profile
# selects namespace kube-system and labels k8s-app=kube-dns).
COREDNS_LABELS = {"k8s-app": "kube-dns"}


# The Kubernetes group preview roles are mapped to; preview_access.py binds it to what previews read.
PREVIEW_GROUP = "selfhost:preview"


def _access_policy(arn: str, policy: str) -> eks.AccessPolicyAssociationArgsDict:
    return {
        "policy_arn": f"arn:{arn_partition(arn)}:eks::aws:cluster-access-policy/{policy}",
        "access_scope": {"type": "cluster"},
    }


def access_entries(
    admin_role_arns: Sequence[str], preview_role_arns: Sequence[str], tags: Mapping[str, str]
) -> dict[str, eks.AccessEntryArgsDict]:
    """EKS access entries, keyed by account and role name so that reordering changes nothing.

    Admins get the cluster-admin equivalent, AmazonEKSClusterAdminPolicy. Preview roles (CI previews on pull
    requests) get AmazonEKSViewPolicy, which reads every object but Secrets, and the PREVIEW_GROUP group, which
    preview_access.py lets read the Helm release Secrets a preview of a release needs (EKS user guide, "Review
    access policy permissions").
    """
    entries: dict[str, eks.AccessEntryArgsDict] = {}
    for arn in admin_role_arns:
        account, role = arn.split(":")[4], arn.rsplit("/", 1)[-1]
        entries[f"admin-{account}-{role}"] = {
            "principal_arn": arn,
            "type": eks.AccessEntryType.STANDARD,
            "access_policies": {"cluster-admin": _access_policy(arn, "AmazonEKSClusterAdminPolicy")},
            "tags": dict(tags),
        }
    for arn in preview_role_arns:
        account, role = arn.split(":")[4], arn.rsplit("/", 1)[-1]
        entries[f"preview-{account}-{role}"] = {
            "principal_arn": arn,
            "type": eks.AccessEntryType.STANDARD,
            "kubernetes_groups": [PREVIEW_GROUP],
            "access_policies": {"view": _access_policy(arn, "AmazonEKSViewPolicy")},
            "tags": dict(tags),
        }
    return entries


def fargate_selectors(namespaces: Sequence[str]) -> list[aws.eks.FargateProfileSelectorArgsDict]:
    """Whole namespaces (Karpenter's) plus CoreDNS alone, so that other kube-system pods stay on nodes."""
    selectors: list[aws.eks.FargateProfileSelectorArgsDict] = [
        {"namespace": namespace} for namespace in namespaces
    ]
    selectors.append({"namespace": "kube-system", "labels": dict(COREDNS_LABELS)})
    return selectors


def pod_execution_trust_policy(
    partition: str, region: str, account_id: str, cluster_name: str
) -> dict[str, Any]:
    """Fargate may assume the role only for this cluster's profiles: the confused-deputy guard from the EKS
    user guide, "Amazon EKS Pod execution IAM role"."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "eks-fargate-pods.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{partition}:eks:{region}:{account_id}:fargateprofile/{cluster_name}/*"
                    }
                },
            }
        ],
    }


@dataclass(frozen=True)
class EndpointAccess:
    public: bool
    public_cidrs: list[str] | None


def endpoint_access(public_access_cidrs: Sequence[str]) -> EndpointAccess:
    """The public endpoint only for the given CIDRs, or off when there are none. pulumi-eks rejects CIDRs
    on a cluster whose public endpoint is off, so they are left unset then."""
    return EndpointAccess(public=bool(public_access_cidrs), public_cidrs=list(public_access_cidrs) or None)

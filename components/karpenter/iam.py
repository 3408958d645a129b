"""IAM policy documents for Karpenter: the controller's trust and permissions, the nodes' trust, the queue.

Pure functions returning plain dicts, rendered by the Karpenter component with `json.dumps`.

Source of every controller statement: Karpenter's getting-started CloudFormation template for v1.14
(website/content/en/v1.14/getting-started/getting-started-with-karpenter/cloudformation.yaml), which splits
the controller's permissions into six managed policies. They are reproduced statement for statement, with
the template's `${ClusterName}`, `${AWS::Partition}`, `${AWS::Region}`, `${AWS::AccountId}` and resource
references filled in from `ControllerScope`, so every write is scoped to this cluster's tags and ARNs exactly
as upstream scopes it. The one addition is `spot_service_linked_role_policy` (see there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

PolicyDocument = dict[str, Any]

VERSION = "2012-10-17"

# The node role's managed policies, as upstream's KarpenterNodeRole attaches them.
NODE_MANAGED_POLICIES = (
    "AmazonEKS_CNI_Policy",
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore",
)


@dataclass(frozen=True)
class ControllerScope:
    """What the controller's permissions are scoped to."""

    partition: str
    region: str
    account_id: str
    cluster_name: str
    node_role_arn: str
    queue_arn: str

    def ec2(self, resource: str, account: str = "*") -> str:
        return f"arn:{self.partition}:ec2:{self.region}:{account}:{resource}"

    @property
    def cluster_arn(self) -> str:
        return f"arn:{self.partition}:eks:{self.region}:{self.account_id}:cluster/{self.cluster_name}"

    @property
    def instance_profiles(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:instance-profile/*"


def node_trust_policy(dns_suffix: str) -> PolicyDocument:
    """EC2 instances assume the node role (upstream: Service `ec2.${AWS::URLSuffix}`)."""
    return {
        "Version": VERSION,
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": f"ec2.{dns_suffix}"}, "Action": ["sts:AssumeRole"]}
        ],
    }


def _owned(scope: ControllerScope, tag_source: str) -> dict[str, str]:
    return {f"aws:{tag_source}/kubernetes.io/cluster/{scope.cluster_name}": "owned"}


def node_lifecycle_policy(scope: ControllerScope) -> PolicyDocument:
    """Upstream KarpenterControllerNodeLifecyclePolicy: launch, tag and terminate this cluster's nodes."""
    created = [
        scope.ec2("fleet/*"),
        scope.ec2("instance/*"),
        scope.ec2("volume/*"),
        scope.ec2("network-interface/*"),
        scope.ec2("launch-template/*"),
        scope.ec2("spot-instances-request/*"),
    ]
    request_tags = {
        **_owned(scope, "RequestTag"),
        "aws:RequestTag/eks:eks-cluster-name": scope.cluster_name,
    }
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "AllowScopedEC2InstanceAccessActions",
                "Effect": "Allow",
                "Resource": [
                    scope.ec2("image/*", account=""),
                    scope.ec2("snapshot/*", account=""),
                    scope.ec2("security-group/*"),
                    scope.ec2("subnet/*"),
                    scope.ec2("capacity-reservation/*"),
                    scope.ec2("placement-group/*"),
                ],
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
            },
            {
                "Sid": "AllowScopedEC2LaunchTemplateAccessActions",
                "Effect": "Allow",
                "Resource": scope.ec2("launch-template/*"),
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
                "Condition": {
                    "StringEquals": _owned(scope, "ResourceTag"),
                    "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedEC2InstanceActionsWithTags",
                "Effect": "Allow",
                "Resource": created,
                "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
                "Condition": {
                    "StringEquals": request_tags,
                    "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedResourceCreationTagging",
                "Effect": "Allow",
                "Resource": created,
                "Action": "ec2:CreateTags",
                "Condition": {
                    "StringEquals": {
                        **request_tags,
                        "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                    },
                    "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedResourceTagging",
                "Effect": "Allow",
                "Resource": scope.ec2("instance/*"),
                "Action": "ec2:CreateTags",
                "Condition": {
                    "StringEquals": _owned(scope, "ResourceTag"),
                    "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                    "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": scope.cluster_name},
                    "ForAllValues:StringEquals": {
                        "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
                    },
                },
            },
            {
                "Sid": "AllowScopedDeletion",
                "Effect": "Allow",
                "Resource": [scope.ec2("instance/*"), scope.ec2("launch-template/*")],
                "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
                "Condition": {
                    "StringEquals": _owned(scope, "ResourceTag"),
                    "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                },
            },
        ],
    }


def iam_integration_policy(scope: ControllerScope) -> PolicyDocument:
    """Upstream KarpenterControllerIAMIntegrationPolicy: pass the node role, manage its instance profiles."""
    region_tag = "topology.kubernetes.io/region"
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "AllowPassingInstanceRole",
                "Effect": "Allow",
                "Resource": scope.node_role_arn,
                "Action": "iam:PassRole",
                "Condition": {
                    "StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}
                },
            },
            {
                "Sid": "AllowScopedInstanceProfileCreationActions",
                "Effect": "Allow",
                "Resource": scope.instance_profiles,
                "Action": ["iam:CreateInstanceProfile"],
                "Condition": {
                    "StringEquals": {
                        **_owned(scope, "RequestTag"),
                        "aws:RequestTag/eks:eks-cluster-name": scope.cluster_name,
                        f"aws:RequestTag/{region_tag}": scope.region,
                    },
                    "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"},
                },
            },
            {
                "Sid": "AllowScopedInstanceProfileTagActions",
                "Effect": "Allow",
                "Resource": scope.instance_profiles,
                "Action": ["iam:TagInstanceProfile"],
                "Condition": {
                    "StringEquals": {
                        **_owned(scope, "ResourceTag"),
                        f"aws:ResourceTag/{region_tag}": scope.region,
                        **_owned(scope, "RequestTag"),
                        "aws:RequestTag/eks:eks-cluster-name": scope.cluster_name,
                        f"aws:RequestTag/{region_tag}": scope.region,
                    },
                    "StringLike": {
                        "aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                        "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*",
                    },
                },
            },
            {
                "Sid": "AllowScopedInstanceProfileActions",
                "Effect": "Allow",
                "Resource": scope.instance_profiles,
                "Action": [
                    "iam:AddRoleToInstanceProfile",
                    "iam:RemoveRoleFromInstanceProfile",
                    "iam:DeleteInstanceProfile",
                ],
                "Condition": {
                    "StringEquals": {
                        **_owned(scope, "ResourceTag"),
                        f"aws:ResourceTag/{region_tag}": scope.region,
                    },
                    "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"},
                },
            },
        ],
    }


def eks_integration_policy(scope: ControllerScope) -> PolicyDocument:
    """Upstream KarpenterControllerEKSIntegrationPolicy: discover this cluster's API endpoint."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "AllowAPIServerEndpointDiscovery",
                "Effect": "Allow",
                "Resource": scope.cluster_arn,
                "Action": "eks:DescribeCluster",
            }
        ],
    }


def interruption_policy(scope: ControllerScope) -> PolicyDocument:
    """Upstream KarpenterControllerInterruptionPolicy: read and delete messages of this cluster's queue."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "AllowInterruptionQueueActions",
                "Effect": "Allow",
                "Resource": scope.queue_arn,
                "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
            }
        ],
    }


def zonal_shift_policy(scope: ControllerScope) -> PolicyDocument:
    """Upstream KarpenterControllerZonalShiftPolicy: read zonal-shift status of this cluster only."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "AllowZonalShiftStatusReadOnly",
                "Effect": "Allow",
                "Resource": "*",
                "Action": ["arc-zonal-shift:GetManagedResource"],
                "Condition": {"StringEquals": {"arc-zonal-shift:ResourceIdentifier": scope.cluster_arn}},
            }
        ],
    }


def resource_discovery_policy(scope: ControllerScope) -> PolicyDocument:
    """Upstream KarpenterControllerResourceDiscoveryPolicy: the read-only calls that pick instance types."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "AllowRegionalReadActions",
                "Effect": "Allow",
                "Resource": "*",
                "Action": [
                    "ec2:DescribeCapacityReservations",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstances",
                    "ec2:DescribeInstanceStatus",
                    "ec2:DescribeInstanceTypeOfferings",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplates",
                    "ec2:DescribePlacementGroups",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSpotPriceHistory",
                    "ec2:DescribeSubnets",
                ],
                "Condition": {"StringEquals": {"aws:RequestedRegion": scope.region}},
            },
            {
                "Sid": "AllowSSMReadActions",
                "Effect": "Allow",
                "Resource": f"arn:{scope.partition}:ssm:{scope.region}::parameter/aws/service/*",
                "Action": "ssm:GetParameter",
            },
            {
                "Sid": "AllowPricingReadActions",
                "Effect": "Allow",
                "Resource": "*",
                "Action": "pricing:GetProducts",
            },
            {
                "Sid": "AllowUnscopedInstanceProfileListAction",
                "Effect": "Allow",
                "Resource": "*",
                "Action": "iam:ListInstanceProfiles",
            },
            {
                "Sid": "AllowInstanceProfileReadActions",
                "Effect": "Allow",
                "Resource": scope.instance_profiles,
                "Action": "iam:GetInstanceProfile",
            },
        ],
    }


SPOT_SERVICE = "spot.amazonaws.com"
SPOT_SERVICE_LINKED_ROLE = "AWSServiceRoleForEC2Spot"


def spot_service_linked_role_policy(scope: ControllerScope) -> PolicyDocument:
    """Let EC2 create the Spot service-linked role on the controller's first spot launch.

    A fresh account has no AWSServiceRoleForEC2Spot, and CreateFleet for spot then fails with
    AuthFailure.ServiceLinkedRoleCreationNotPermitted unless the caller may create it (EC2 creates it on the
    caller's behalf). Upstream's guide runs `aws iam create-service-linked-role --aws-service-name
    spot.amazonaws.com` by hand instead. A Pulumi-managed aws.iam.ServiceLinkedRole is not used: the role
    is one per account, creating it fails wherever it already exists (any account that ever ran spot), and
    `pulumi destroy` would delete it from under other workloads. This grant is limited to that one role
    name and service, the form the IAM user guide gives for letting an entity create a specific
    service-linked role; eksctl grants Karpenter the same for this reason.
    """
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "AllowSpotServiceLinkedRoleCreation",
                "Effect": "Allow",
                "Resource": (
                    f"arn:{scope.partition}:iam::{scope.account_id}:role/aws-service-role/"
                    f"{SPOT_SERVICE}/{SPOT_SERVICE_LINKED_ROLE}"
                ),
                "Action": "iam:CreateServiceLinkedRole",
                "Condition": {"StringEquals": {"iam:AWSServiceName": SPOT_SERVICE}},
            }
        ],
    }


# Upstream's six controller policies, keyed by the short name each is registered under, in template order.
UPSTREAM_CONTROLLER_POLICIES: Mapping[str, Callable[[ControllerScope], PolicyDocument]] = {
    "node-lifecycle": node_lifecycle_policy,
    "iam-integration": iam_integration_policy,
    "eks-integration": eks_integration_policy,
    "interruption": interruption_policy,
    "zonal-shift": zonal_shift_policy,
    "resource-discovery": resource_discovery_policy,
}

CONTROLLER_POLICIES: Mapping[str, Callable[[ControllerScope], PolicyDocument]] = {
    **UPSTREAM_CONTROLLER_POLICIES,
    "spot-service-linked-role": spot_service_linked_role_policy,
}


def interruption_queue_policy(queue_arn: str) -> PolicyDocument:
    """Upstream KarpenterInterruptionQueuePolicy: EventBridge and SQS may send; nothing without TLS."""
    return {
        "Version": VERSION,
        "Id": "EC2InterruptionPolicy",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
            },
            {
                "Sid": "DenyHTTP",
                "Effect": "Deny",
                "Action": "sqs:*",
                "Resource": queue_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                "Principal": "*",
            },
        ],
    }


@dataclass(frozen=True)
class InterruptionRule:
    """An EventBridge rule feeding the interruption queue, under its name in upstream's template."""

    upstream_name: str
    # Resource name suffix: EventBridge rule names are limited to 64 characters.
    short_name: str
    pattern: Mapping[str, list[str]]


# Upstream's five rules (cloudformation.yaml): each sends its events to the interruption queue so the
# controller drains a node before EC2 takes it away.
INTERRUPTION_RULES = (
    InterruptionRule(
        "ScheduledChangeRule", "health", {"source": ["aws.health"], "detail-type": ["AWS Health Event"]}
    ),
    InterruptionRule(
        "SpotInterruptionRule",
        "spot",
        {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    ),
    InterruptionRule(
        "RebalanceRule",
        "rebalance",
        {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    ),
    InterruptionRule(
        "InstanceStateChangeRule",
        "state-change",
        {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    ),
    InterruptionRule(
        "CapacityReservationInterruptionRule",
        "reservation",
        {"source": ["aws.ec2"], "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"]},
    ),
)
INTERRUPTION_TARGET_ID = "KarpenterInterruptionQueueTarget"

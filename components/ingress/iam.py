"""The AWS Load Balancer Controller's IAM policy, as a plain dict for `json.dumps`.

Source: kubernetes-sigs/aws-load-balancer-controller docs/install/iam_policy.json at v3.5.0, reproduced
statement for statement: its 16 statements in upstream order, the same actions in the same order, the same
resources and conditions. Upstream hard-codes `arn:aws:` in the ARNs of six statements and ships a copy of
the file per partition (iam_policy_cn.json, iam_policy_us-gov.json, ...); here the partition is filled in.

Upstream scopes the controller's writes by the `elbv2.k8s.aws/cluster` tag it puts on every security group,
load balancer and target group it creates. The conditions are IAM `Null` tests, so they check that the tag
is there, not its value.
"""

from __future__ import annotations

from typing import Any

_CLUSTER_TAG = "elbv2.k8s.aws/cluster"
_REQUEST_TAG = f"aws:RequestTag/{_CLUSTER_TAG}"
_RESOURCE_TAG = f"aws:ResourceTag/{_CLUSTER_TAG}"


# In an IAM `Null` condition, "false" means the key is present and "true" that it is absent.
def _request_sets_cluster_tag() -> dict[str, dict[str, str]]:
    """The call tags what it creates with the cluster tag."""
    return {"Null": {_REQUEST_TAG: "false"}}


def _resource_has_cluster_tag() -> dict[str, dict[str, str]]:
    """The resource is one the controller created."""
    return {"Null": {_RESOURCE_TAG: "false"}}


def _resource_has_cluster_tag_request_leaves_it() -> dict[str, dict[str, str]]:
    """The resource is one the controller created, and the call neither sets nor removes the cluster tag."""
    return {"Null": {_REQUEST_TAG: "true", _RESOURCE_TAG: "false"}}


def controller_policy(partition: str) -> dict[str, Any]:
    """Upstream iam_policy.json with `arn:{partition}:` in its resource ARNs."""
    security_groups = f"arn:{partition}:ec2:*:*:security-group/*"

    def elb(resource: str) -> str:
        return f"arn:{partition}:elasticloadbalancing:*:*:{resource}"

    target_groups = elb("targetgroup/*/*")
    load_balancers_and_target_groups = [
        target_groups,
        elb("loadbalancer/net/*/*"),
        elb("loadbalancer/app/*/*"),
    ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            # ELB creates its service-linked role on an account's first load balancer.
            {
                "Effect": "Allow",
                "Action": ["iam:CreateServiceLinkedRole"],
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}},
            },
            # Discovery: subnets, security groups, instances and ENIs behind targets, and current ELB state.
            {
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeAccountAttributes",
                    "ec2:DescribeAddresses",
                    "ec2:DescribeAvailabilityZones",
                    "ec2:DescribeInternetGateways",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeVpcPeeringConnections",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeInstances",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeTags",
                    "ec2:GetCoipPoolUsage",
                    "ec2:DescribeCoipPools",
                    "ec2:GetSecurityGroupsForVpc",
                    "ec2:DescribeIpamPools",
                    "ec2:DescribeRouteTables",
                    "elasticloadbalancing:DescribeLoadBalancers",
                    "elasticloadbalancing:DescribeLoadBalancerAttributes",
                    "elasticloadbalancing:DescribeListeners",
                    "elasticloadbalancing:DescribeListenerCertificates",
                    "elasticloadbalancing:DescribeSSLPolicies",
                    "elasticloadbalancing:DescribeRules",
                    "elasticloadbalancing:DescribeTargetGroups",
                    "elasticloadbalancing:DescribeTargetGroupAttributes",
                    "elasticloadbalancing:DescribeTargetHealth",
                    "elasticloadbalancing:DescribeTags",
                    "elasticloadbalancing:DescribeTrustStores",
                    "elasticloadbalancing:DescribeListenerAttributes",
                    "elasticloadbalancing:DescribeCapacityReservation",
                ],
                "Resource": "*",
            },
            # What Ingress annotations may name: Cognito auth, ACM and IAM certificates, WAF web ACLs, Shield.
            {
                "Effect": "Allow",
                "Action": [
                    "cognito-idp:DescribeUserPoolClient",
                    "acm:ListCertificates",
                    "acm:DescribeCertificate",
                    "iam:ListServerCertificates",
                    "iam:GetServerCertificate",
                    "waf-regional:GetWebACL",
                    "waf-regional:GetWebACLForResource",
                    "waf-regional:AssociateWebACL",
                    "waf-regional:DisassociateWebACL",
                    "wafv2:GetWebACL",
                    "wafv2:GetWebACLForResource",
                    "wafv2:AssociateWebACL",
                    "wafv2:DisassociateWebACL",
                    "shield:GetSubscriptionState",
                    "shield:DescribeProtection",
                    "shield:CreateProtection",
                    "shield:DeleteProtection",
                ],
                "Resource": "*",
            },
            # Security groups. Ingress rules on any group: it opens the nodes' groups, which it did not
            # create, to its load balancers.
            {
                "Effect": "Allow",
                "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
                "Resource": "*",
            },
            {"Effect": "Allow", "Action": ["ec2:CreateSecurityGroup"], "Resource": "*"},
            # Tags on a new group only in the call that creates it, and only with the cluster tag.
            {
                "Effect": "Allow",
                "Action": ["ec2:CreateTags"],
                "Resource": security_groups,
                "Condition": {
                    "StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"},
                    **_request_sets_cluster_tag(),
                },
            },
            # Retagging only the groups it created, never their cluster tag.
            {
                "Effect": "Allow",
                "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
                "Resource": security_groups,
                "Condition": _resource_has_cluster_tag_request_leaves_it(),
            },
            # Rules on, and deletion of, the groups it created.
            {
                "Effect": "Allow",
                "Action": [
                    "ec2:AuthorizeSecurityGroupIngress",
                    "ec2:RevokeSecurityGroupIngress",
                    "ec2:DeleteSecurityGroup",
                ],
                "Resource": "*",
                "Condition": _resource_has_cluster_tag(),
            },
            # Load balancers and target groups: created only with the cluster tag.
            {
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:CreateLoadBalancer",
                    "elasticloadbalancing:CreateTargetGroup",
                ],
                "Resource": "*",
                "Condition": _request_sets_cluster_tag(),
            },
            # Listeners and rules carry no cluster tag; upstream leaves them unscoped.
            {
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:CreateListener",
                    "elasticloadbalancing:DeleteListener",
                    "elasticloadbalancing:CreateRule",
                    "elasticloadbalancing:DeleteRule",
                ],
                "Resource": "*",
            },
            # Retagging only the load balancers and target groups it created, never their cluster tag.
            {
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
                "Resource": load_balancers_and_target_groups,
                "Condition": _resource_has_cluster_tag_request_leaves_it(),
            },
            {
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
                "Resource": [
                    elb("listener/net/*/*/*"),
                    elb("listener/app/*/*/*"),
                    elb("listener-rule/net/*/*/*"),
                    elb("listener-rule/app/*/*/*"),
                ],
            },
            # Changing and deleting only the load balancers and target groups it created.
            {
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:ModifyLoadBalancerAttributes",
                    "elasticloadbalancing:SetIpAddressType",
                    "elasticloadbalancing:SetSecurityGroups",
                    "elasticloadbalancing:SetSubnets",
                    "elasticloadbalancing:DeleteLoadBalancer",
                    "elasticloadbalancing:ModifyTargetGroup",
                    "elasticloadbalancing:ModifyTargetGroupAttributes",
                    "elasticloadbalancing:DeleteTargetGroup",
                    "elasticloadbalancing:ModifyListenerAttributes",
                    "elasticloadbalancing:ModifyCapacityReservation",
                    "elasticloadbalancing:ModifyIpPools",
                ],
                "Resource": "*",
                "Condition": _resource_has_cluster_tag(),
            },
            # Tags on a new load balancer or target group in the call that creates it, with the cluster tag.
            {
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:AddTags"],
                "Resource": load_balancers_and_target_groups,
                "Condition": {
                    "StringEquals": {
                        "elasticloadbalancing:CreateAction": ["CreateTargetGroup", "CreateLoadBalancer"]
                    },
                    **_request_sets_cluster_tag(),
                },
            },
            # Targets in any target group: a TargetGroupBinding may name one the controller did not create.
            {
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
                "Resource": target_groups,
            },
            # Listener and rule changes, certificates and the ALB's web ACL: unscoped upstream.
            {
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:SetWebAcl",
                    "elasticloadbalancing:ModifyListener",
                    "elasticloadbalancing:AddListenerCertificates",
                    "elasticloadbalancing:RemoveListenerCertificates",
                    "elasticloadbalancing:ModifyRule",
                    "elasticloadbalancing:SetRulePriorities",
                ],
                "Resource": "*",
            },
        ],
    }

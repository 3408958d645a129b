"""IAM shared by the components: the IRSA trust policy that lets exactly one Kubernetes ServiceAccount assume a
role through the cluster's OIDC provider (EKS user guide, associate-service-account-role), and the ARNs of AWS
managed policies in the stack's partition."""

from __future__ import annotations

from typing import Any


def service_account_trust_policy(
    oidc_provider_arn: str, oidc_provider_url: str, namespace: str, service_account: str
) -> dict[str, Any]:
    """Only `namespace/service_account`, with the STS audience, may assume the role."""
    issuer = oidc_provider_url.removeprefix("https://")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                        f"{issuer}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }


def arn_partition(arn: str) -> str:
    """aws, aws-cn or aws-us-gov: the second field of an ARN."""
    return arn.split(":")[1]


def aws_managed_policy_arn(partition: str, name: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{name}"

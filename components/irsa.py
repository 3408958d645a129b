"""IAM roles for Kubernetes ServiceAccounts (IRSA): the trust policy that lets exactly one ServiceAccount
assume a role through the cluster's OIDC provider (EKS user guide, associate-service-account-role)."""

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

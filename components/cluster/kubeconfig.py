"""The kubeconfig the platform's Kubernetes provider uses and the stack exports.

pulumi-eks exports a kubeconfig without the AWS CLI profile (nodejs/eks/cluster/cluster.ts: `kubeconfigJson`
is `genKubeconfig(false)`; only its internal provider and `getKubeconfig()` get `--profile`), so a stack that
names its credentials by `aws:profile` alone would sign Kubernetes requests with whatever credentials happen
to be around, or none. This builds the same exec kubeconfig from the cluster's endpoint and certificate
authority, with `--profile` when the stack has one. The layout follows pulumi-eks's generateKubeconfig: `aws
eks get-token` through the `client.authentication.k8s.io/v1beta1` exec API, profile as an argument rather than
AWS_PROFILE (which ambient credentials would override).
"""

from __future__ import annotations

import json
from typing import Any

EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"


def server_and_certificate(kubeconfig_json: str) -> tuple[str, str]:
    """The API server URL and its CA bundle from pulumi-eks's kubeconfig (its only cluster entry)."""
    cluster = json.loads(kubeconfig_json)["clusters"][0]["cluster"]
    return cluster["server"], cluster["certificate-authority-data"]


def get_token_args(cluster_name: str, region: str, profile: str | None) -> list[str]:
    """`aws eks get-token` for this cluster, in its region, as the stack's profile when it names one."""
    args = ["--region", region, "eks", "get-token", "--cluster-name", cluster_name, "--output", "json"]
    return [*args, "--profile", profile] if profile else args


def exec_kubeconfig(
    cluster_name: str, server: str, certificate_authority_data: str, region: str, profile: str | None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"server": server, "certificate-authority-data": certificate_authority_data},
            }
        ],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [
            {
                "name": cluster_name,
                "user": {
                    "exec": {
                        "apiVersion": EXEC_API_VERSION,
                        "command": "aws",
                        "args": get_token_args(cluster_name, region, profile),
                        # Tells `aws eks get-token` which ExecCredential version to answer with.
                        "env": [
                            {
                                "name": "KUBERNETES_EXEC_INFO",
                                "value": json.dumps({"apiVersion": EXEC_API_VERSION}),
                            }
                        ],
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
    }


def update_kubeconfig_command(region: str, cluster_name: str, profile: str | None) -> str:
    command = f"aws eks update-kubeconfig --region {region} --name {cluster_name}"
    return f"{command} --profile {profile}" if profile else command

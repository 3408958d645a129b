"""What a read-only preview role needs beyond AmazonEKSViewPolicy: the Helm release Secrets.

A preview of a `helm.v3.Release` reads the release's current state, which Helm keeps in Secrets of type
`helm.sh/release.v1` in the release's namespace; AmazonEKSViewPolicy reads no Secret. RBAC cannot grant Secrets
by type, and Helm lists them by label, so preview roles may read the Secrets of the namespaces that hold
releases, and no other namespace's (the model server's credentials stay out of reach). Bound to the Kubernetes
group the preview roles' access entries carry (access.PREVIEW_GROUP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.cluster.access import PREVIEW_GROUP

ROLE_NAME = "selfhost-preview-helm-releases"


def helm_release_reader(namespace: str) -> list[dict[str, Any]]:
    """The Role that reads a namespace's Secrets and its binding to the preview group."""
    metadata = {"name": ROLE_NAME, "namespace": namespace}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata,
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE_NAME},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": PREVIEW_GROUP}],
        },
    ]


@dataclass
class PreviewAccessArgs:
    provider: k8s.Provider
    # The namespaces that hold Helm releases.
    namespaces: Sequence[str]
    # What creates those namespaces.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class PreviewAccess(pulumi.ComponentResource):
    def __init__(self, name: str, args: PreviewAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("selfhost:index:PreviewAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on])
        for namespace in args.namespaces:
            role, binding = helm_release_reader(namespace)
            created = k8s.rbac.v1.Role(
                f"{name}-{namespace}-role", metadata=role["metadata"], rules=role["rules"], opts=child
            )
            k8s.rbac.v1.RoleBinding(
                f"{name}-{namespace}-binding",
                metadata=binding["metadata"],
                role_ref=binding["roleRef"],
                subjects=binding["subjects"],
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[created])),
            )
        self.register_outputs({"namespaces": list(args.namespaces)})

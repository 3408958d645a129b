"""A plan's resources as the engine shows them to a policy pack, rather than as the program registered them.

Two things differ from the plan's record (the program's registrations under the SDK's mocks):
- a remote component reaches the analyzer from its provider's Construct, with no properties (pulumi-eks's
  bundled Node SDK, @pulumi/pulumi 3.173, registers components with empty props), so it is shown as `{}`;
- the component's children, which the mocks never construct, are shown. Of pulumi-eks's children the rules
  read the EKS cluster, `aws:eks/cluster:Cluster` named `<name>-eksCluster`, whose encryptionConfig
  nodejs/eks/cluster/cluster.ts builds from `encryptionConfigKeyArn`: {provider: {keyArn}, resources:
  ["secrets"]}. On a stack's first preview the key does not exist yet and the whole value is unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pulumi_policy.proxy import UNKNOWN_OBJECT_VALUE

from policy.rules import EKS_CLUSTER, REMOTE_COMPONENTS
from selfhost.plan.runner import PlanResult

Resource = tuple[str, str, dict[str, Any]]


def eks_cluster_child(name: str, component_inputs: dict[str, Any], first_preview: bool) -> Resource:
    key = component_inputs.get("encryptionConfigKeyArn")
    props: dict[str, Any] = {"name": component_inputs.get("name"), "version": component_inputs.get("version")}
    if key is not None:
        props["encryptionConfig"] = (
            UNKNOWN_OBJECT_VALUE if first_preview else {"provider": {"keyArn": key}, "resources": ["secrets"]}
        )
    return EKS_CLUSTER, f"{name}-eksCluster", props


def engine_view(plan: PlanResult, first_preview: bool = False) -> Iterator[Resource]:
    """(type, name, props) of every resource the analyzer would see on a preview of the plan's stack."""
    for resource in plan.resources:
        if resource.type in REMOTE_COMPONENTS:
            yield resource.type, resource.name, {}
            if resource.type == "eks:index:Cluster":
                yield eks_cluster_child(resource.name, resource.inputs, first_preview)
        else:
            yield resource.type, resource.name, resource.inputs

"""Would the scheduler place a pod on a node? nodeSelector, required node affinity and taints, as in
Kubernetes (kubernetes.io docs: "Assigning Pods to Nodes", "Taints and Tolerations"; component-helpers
nodeaffinity and v1 helper TolerationsTolerateTaint).

- nodeSelector: every pair must be a node label.
- requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms are ORed; inside a term the
  matchExpressions (and matchFields) are ANDed; a term with neither matches nothing.
- In: label present with a listed value. NotIn: label absent or value not listed. Exists / DoesNotExist.
  Gt / Lt: label present, both sides integers, strict comparison with the single listed value.
- A taint with effect NoSchedule or NoExecute keeps the pod off unless a toleration matches it
  (PreferNoSchedule is only a preference). A toleration matches when its effect is empty or equal, its
  key is equal (an empty key with Exists matches every key), and for operator Equal (the default) its
  value is equal; Exists ignores the value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Labels Karpenter puts on every node from the instance type (Karpenter v1.14 docs, scheduling.md
# well-known labels; GPU values for g6 from instance-types.md: l4 / nvidia / 1 / 22888).
G6_XLARGE_LABELS = {
    "kubernetes.io/arch": "amd64",
    "kubernetes.io/os": "linux",
    "node.kubernetes.io/instance-type": "g6.xlarge",
    "topology.kubernetes.io/zone": "us-west-2a",
    "karpenter.sh/capacity-type": "spot",
    "karpenter.k8s.aws/instance-family": "g6",
    "karpenter.k8s.aws/instance-gpu-manufacturer": "nvidia",
    "karpenter.k8s.aws/instance-gpu-name": "l4",
    "karpenter.k8s.aws/instance-gpu-count": "1",
    "karpenter.k8s.aws/instance-gpu-memory": "22888",
}
M7I_LARGE_LABELS = {
    "kubernetes.io/arch": "amd64",
    "kubernetes.io/os": "linux",
    "node.kubernetes.io/instance-type": "m7i.large",
    "topology.kubernetes.io/zone": "us-west-2b",
    "karpenter.sh/capacity-type": "on-demand",
    "karpenter.k8s.aws/instance-family": "m7i",
}


@dataclass(frozen=True)
class Node:
    name: str
    labels: Mapping[str, str]
    taints: Sequence[Mapping[str, str]] = field(default_factory=tuple)


def node_from_pool(pool: Mapping[str, Any], instance_labels: Mapping[str, str], name: str) -> Node:
    """A node a NodePool would launch: its template's labels and taints, the pool name label
    (karpenter.sh/nodepool, set by Karpenter on every node), and the instance type's well-known labels."""
    template = pool["spec"]["template"]
    labels = {
        **instance_labels,
        **(template.get("metadata") or {}).get("labels", {}),
        "karpenter.sh/nodepool": pool["metadata"]["name"],
    }
    return Node(name, labels, tuple(template["spec"].get("taints") or ()))


def requirement_matches(requirement: Mapping[str, Any], values_by_key: Mapping[str, str]) -> bool:
    key, operator = requirement["key"], requirement["operator"]
    wanted = list(requirement.get("values") or [])
    present = key in values_by_key
    value = values_by_key.get(key)
    if operator == "In":
        return present and value in wanted
    if operator == "NotIn":
        return not present or value not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt"):
        if not present or len(wanted) != 1:
            return False
        try:
            have, bound = int(str(value)), int(wanted[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    raise ValueError(f"unknown node selector operator {operator!r}")


def term_matches(term: Mapping[str, Any], node: Node) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    return all(requirement_matches(e, node.labels) for e in expressions) and all(
        requirement_matches(f, {"metadata.name": node.name}) for f in fields
    )


def node_affinity_matches(affinity: Mapping[str, Any] | None, node: Node) -> bool:
    required = ((affinity or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if required is None:
        return True
    return any(term_matches(term, node) for term in required.get("nodeSelectorTerms") or [])


def node_selector_matches(node_selector: Mapping[str, str] | None, node: Node) -> bool:
    return all(node.labels.get(key) == value for key, value in (node_selector or {}).items())


def toleration_matches(toleration: Mapping[str, Any], taint: Mapping[str, str]) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint["effect"]:
        return False
    operator = toleration.get("operator") or "Equal"
    key = toleration.get("key") or ""
    if not key:
        return operator == "Exists"
    if key != taint["key"]:
        return False
    if operator == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taints(
    tolerations: Sequence[Mapping[str, Any]] | None, node: Node
) -> list[Mapping[str, str]]:
    return [
        taint
        for taint in node.taints
        if taint["effect"] in ("NoSchedule", "NoExecute")
        and not any(toleration_matches(t, taint) for t in tolerations or [])
    ]


def schedulable(pod: Mapping[str, Any], node: Node) -> bool:
    """`pod` holds nodeSelector, affinity and tolerations, as a pod spec or a chart's values do."""
    return (
        node_selector_matches(pod.get("nodeSelector"), node)
        and node_affinity_matches(pod.get("affinity"), node)
        and not untolerated_taints(pod.get("tolerations"), node)
    )

"""Where the charts' pods can run, from the values Helm would render with: the chart's upstream defaults
(../shared/reference/<chart>/values.yaml) merged with the plan's values, evaluated against nodes labelled
and tainted as Karpenter's NodePools make them.

The device plugin must run on every GPU node (otherwise the node never advertises nvidia.com/gpu and
Karpenter never sees it initialized) and on no CPU node; the DCGM exporter likewise. Prometheus, Grafana
and the rest of kube-prometheus-stack must fit the system pool and stay off GPU nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.karpenter.nodes import gpu_node_pool, system_node_pool
from selfhost.plan.runner import PlanResult
from stacks.platform import node_settings
from tests.conformance.helm_values import helm_merge, lookup, reference_values, releases
from tests.conformance.scheduling import (
    G6_XLARGE_LABELS,
    M7I_LARGE_LABELS,
    Node,
    node_affinity_matches,
    node_from_pool,
    requirement_matches,
    schedulable,
    toleration_matches,
    untolerated_taints,
)

# The node as the Karpenter GPU pool is specified to label and taint it, written out by hand.
GPU_NODE_AS_SPECIFIED = Node(
    "ip-10-0-1-10.us-west-2.compute.internal",
    {**G6_XLARGE_LABELS, "karpenter.sh/nodepool": "gpu", "nvidia.com/gpu.present": "true"},
    ({"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"},),
)
# The same node from a GPU pool that lost the gpu.present label.
GPU_NODE_WITHOUT_PRESENT_LABEL = Node(
    GPU_NODE_AS_SPECIFIED.name,
    {k: v for k, v in GPU_NODE_AS_SPECIFIED.labels.items() if k != "nvidia.com/gpu.present"},
    GPU_NODE_AS_SPECIFIED.taints,
)


@pytest.fixture(scope="module")
def gpu_node(dev_plan: PlanResult) -> Node:
    return node_from_pool(
        gpu_node_pool(node_settings(dev_plan.config)),
        G6_XLARGE_LABELS,
        "ip-10-0-1-11.us-west-2.compute.internal",
    )


@pytest.fixture(scope="module")
def system_node() -> Node:
    return node_from_pool(system_node_pool(), M7I_LARGE_LABELS, "ip-10-0-2-20.us-west-2.compute.internal")


def effective_values(plan: PlanResult, reference: Path, chart: str) -> dict[str, Any]:
    return helm_merge(reference_values(reference, chart), releases(plan)[chart]["values"])


# --- the charts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("chart", ["nvidia-device-plugin", "dcgm-exporter"])
def test_gpu_agents_schedule_on_gpu_nodes_only(
    dev_plan: PlanResult, reference: Path, gpu_node: Node, system_node: Node, chart: str
):
    values = effective_values(dev_plan, reference, chart)
    assert schedulable(values, gpu_node)
    assert schedulable(values, GPU_NODE_AS_SPECIFIED)
    assert not schedulable(values, system_node)


@pytest.mark.parametrize("chart", ["nvidia-device-plugin", "dcgm-exporter"])
def test_gpu_agents_still_schedule_when_the_pool_drops_the_gpu_present_label(
    dev_plan: PlanResult, reference: Path, chart: str
):
    assert schedulable(effective_values(dev_plan, reference, chart), GPU_NODE_WITHOUT_PRESENT_LABEL)


def test_upstream_defaults_alone_fail_in_the_ways_the_overrides_fix(reference: Path, system_node: Node):
    """The checks above can fail: the charts' own defaults miss a Karpenter GPU node without the
    gpu.present label (device plugin: NFD-only affinity) or with the taint (DCGM: no GPU toleration)."""
    device_plugin_defaults = reference_values(reference, "nvidia-device-plugin")
    assert not schedulable(device_plugin_defaults, GPU_NODE_WITHOUT_PRESENT_LABEL)
    dcgm_defaults = reference_values(reference, "dcgm-exporter")
    assert not schedulable(dcgm_defaults, GPU_NODE_AS_SPECIFIED)
    assert schedulable(dcgm_defaults, system_node)


# kube-prometheus-stack workloads and the values path of their scheduling fields. The grafana and
# kube-state-metrics subcharts default to no nodeSelector/affinity/tolerations (their values.yaml).
KPS_WORKLOADS = {
    "prometheus": "prometheus.prometheusSpec",
    "alertmanager": "alertmanager.alertmanagerSpec",
    "operator": "prometheusOperator",
    "admission webhook patch jobs": "prometheusOperator.admissionWebhooks.patch",
    "grafana": "grafana",
    "kube-state-metrics": "kube-state-metrics",
}


@pytest.mark.parametrize("stack", ["dev", "prod"])
@pytest.mark.parametrize("workload", sorted(KPS_WORKLOADS))
def test_monitoring_runs_on_the_system_pool_only(
    dev_plan: PlanResult, prod_plan: PlanResult, reference: Path, gpu_node: Node, system_node: Node, stack: str,
    workload: str,
):  # fmt: skip
    plan = dev_plan if stack == "dev" else prod_plan
    values = effective_values(plan, reference, "kube-prometheus-stack")
    pod = {
        key: lookup(values, KPS_WORKLOADS[workload]).get(key)
        for key in ("nodeSelector", "affinity", "tolerations")
    }
    assert pod["nodeSelector"] == {"karpenter.sh/nodepool": "system"}
    assert schedulable(pod, system_node)
    assert not schedulable(pod, gpu_node)


def test_node_exporter_keeps_its_run_everywhere_defaults(dev_plan: PlanResult):
    """node-exporter must cover every node, GPU nodes included: its chart tolerates every NoSchedule taint
    by default (FACTS §3), so the plan sets none of its scheduling fields."""
    node_exporter = releases(dev_plan)["kube-prometheus-stack"]["values"].get("prometheus-node-exporter", {})
    assert not {"nodeSelector", "affinity", "tolerations"} & set(node_exporter)


# --- the matcher itself ---------------------------------------------------------------------------------

NODE = Node(
    "n1",
    {"zone": "a", "gpus": "4", "tier": "gpu"},
    ({"key": "dedicated", "value": "ml", "effect": "NoSchedule"},),
)


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, True),
        ({"key": "zone", "operator": "In", "values": ["b"]}, False),
        ({"key": "absent", "operator": "In", "values": ["a"]}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, False),
        ({"key": "absent", "operator": "NotIn", "values": ["a"]}, True),
        ({"key": "zone", "operator": "Exists"}, True),
        ({"key": "absent", "operator": "Exists"}, False),
        ({"key": "absent", "operator": "DoesNotExist"}, True),
        ({"key": "zone", "operator": "DoesNotExist"}, False),
        ({"key": "gpus", "operator": "Gt", "values": ["3"]}, True),  # 4 > 3
        ({"key": "gpus", "operator": "Gt", "values": ["4"]}, False),  # 4 > 4 is false
        ({"key": "gpus", "operator": "Lt", "values": ["5"]}, True),  # 4 < 5
        ({"key": "zone", "operator": "Lt", "values": ["5"]}, False),  # "a" is not an integer
        ({"key": "absent", "operator": "Gt", "values": ["0"]}, False),
    ],
)
def test_requirement_operators(requirement: dict[str, Any], expected: bool):
    assert requirement_matches(requirement, NODE.labels) is expected


def test_terms_are_ored_and_expressions_anded():
    def affinity(*terms: list[dict[str, Any]]) -> dict[str, Any]:
        selector = {"nodeSelectorTerms": [{"matchExpressions": term} for term in terms]}
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": selector}}

    zone_a = {"key": "zone", "operator": "In", "values": ["a"]}
    zone_b = {"key": "zone", "operator": "In", "values": ["b"]}
    tier_gpu = {"key": "tier", "operator": "In", "values": ["gpu"]}
    assert node_affinity_matches(affinity([zone_b], [zone_a]), NODE)
    assert not node_affinity_matches(affinity([zone_a, zone_b]), NODE)
    assert node_affinity_matches(affinity([zone_a, tier_gpu]), NODE)
    assert not node_affinity_matches(affinity([]), NODE)  # an empty term matches nothing
    assert node_affinity_matches({}, NODE)  # no required affinity: any node


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}, True),
        ({"key": "dedicated", "value": "ml"}, True),  # operator defaults to Equal, any effect
        ({"key": "dedicated", "operator": "Equal", "value": "web"}, False),
        ({"key": "dedicated", "operator": "Exists"}, True),
        ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"operator": "Exists"}, True),  # empty key with Exists tolerates everything
        ({"key": "other", "operator": "Exists"}, False),
    ],
)
def test_toleration_matching(toleration: dict[str, Any], expected: bool):
    assert toleration_matches(toleration, NODE.taints[0]) is expected


def test_prefer_no_schedule_does_not_block():
    soft = Node("n2", {}, ({"key": "spot", "value": "true", "effect": "PreferNoSchedule"},))
    assert untolerated_taints([], soft) == []
    assert untolerated_taints([], NODE) == [NODE.taints[0]]
    assert schedulable({"nodeSelector": {"zone": "a"}, "tolerations": [{"operator": "Exists"}]}, NODE)
    assert not schedulable({"nodeSelector": {"zone": "b"}, "tolerations": [{"operator": "Exists"}]}, NODE)

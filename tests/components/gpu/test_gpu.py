"""GpuSupport: the device plugin and DCGM exporter releases, the GPU dashboard, and their wiring."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.gpu.component import GpuSupport, GpuSupportArgs
from components.gpu.dashboard import GPU_DASHBOARD_TITLE, GPU_DASHBOARD_UID, gpu_dashboard
from components.gpu.values import (
    DCGM_EXPORTER_CHART,
    DEVICE_PLUGIN_CHART,
    GPU_NAMESPACE,
    dcgm_exporter_values,
    device_plugin_values,
)
from selfhost.plan.command import HELM_RELEASE
from selfhost.plan.runner import PlanResult, RecordedResource, run_program, stack_config
from stacks.config import PlatformConfig
from tests.conformance.promql import dashboard_expressions, label_names, metric_names, promtool_check

# Labels dcgm-exporter 4.8.2 puts on every metric (FACTS §4; `Hostname` is the node name from NODE_NAME).
DCGM_LABELS = {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"}


def exported_metrics(reference: Path) -> set[str]:
    """Metric names in dcgm-exporter's default-counters.csv: uncommented rows that are not `label` fields
    (those become labels on the other metrics, e.g. DCGM_FI_DRIVER_VERSION)."""
    rows = (reference / "dcgm-exporter" / "default-counters.csv").read_text().splitlines()
    fields = csv.reader(row for row in rows if row.strip() and not row.lstrip().startswith("#"))
    return {name.strip() for name, kind, *_ in fields if kind.strip() != "label"}


@pytest.fixture(scope="module")
def gpu_plan() -> PlanResult:
    """GpuSupport alone under the plan's mocks, with stand-ins for the provider and what it waits for."""

    def program(_: PlatformConfig) -> dict[str, Any]:
        provider = k8s.Provider("test-k8s", kubeconfig="{}")
        karpenter = pulumi.CustomResource("test:index:Karpenter", "karpenter-release")
        monitoring = pulumi.CustomResource("test:index:Monitoring", "monitoring-release")
        gpu = GpuSupport(
            "gpu",
            GpuSupportArgs(
                provider=provider,
                monitoring_release=monitoring,
                dashboard_namespace="monitoring",
                depends_on=[karpenter],
            ),
        )
        return {"dashboards": gpu.dashboards}

    config, secret_keys = stack_config("dev")
    return run_program("dev", config, secret_keys, program=program)


def release(plan: PlanResult, name: str) -> RecordedResource:
    return next(r for r in plan.of_type(HELM_RELEASE) if r.inputs["name"] == name)


@pytest.mark.parametrize("chart", [DEVICE_PLUGIN_CHART, DCGM_EXPORTER_CHART])
def test_charts_are_pinned_releases_in_the_gpu_namespace(gpu_plan: PlanResult, chart):
    recorded = release(gpu_plan, chart.name)
    assert recorded.parent == "gpu"
    assert recorded.inputs["chart"] == chart.name
    assert recorded.inputs["version"] == chart.version
    assert recorded.inputs["repositoryOpts"] == {"repo": chart.repo}
    assert recorded.inputs["namespace"] == GPU_NAMESPACE == "nvidia"
    assert "karpenter-release" in recorded.dependencies


def test_pinned_versions_and_repositories():
    assert (DEVICE_PLUGIN_CHART.repo, DEVICE_PLUGIN_CHART.version) == (
        "https://nvidia.github.io/k8s-device-plugin",
        "0.20.0",
    )
    assert (DCGM_EXPORTER_CHART.repo, DCGM_EXPORTER_CHART.version) == (
        "https://nvidia.github.io/dcgm-exporter/helm-charts",
        "4.8.2",
    )


def test_only_the_dcgm_exporter_waits_for_the_monitoring_crds(gpu_plan: PlanResult):
    assert "monitoring-release" in release(gpu_plan, "dcgm-exporter").dependencies
    assert "monitoring-release" not in release(gpu_plan, "nvidia-device-plugin").dependencies


def test_release_values_are_the_builders(gpu_plan: PlanResult):
    assert release(gpu_plan, "nvidia-device-plugin").inputs["values"] == device_plugin_values()
    assert release(gpu_plan, "dcgm-exporter").inputs["values"] == dcgm_exporter_values()


def test_dcgm_exporter_service_monitor_is_on_and_keeps_exporter_labels_apart():
    monitor = dcgm_exporter_values()["serviceMonitor"]
    assert monitor == {"enabled": True, "honorLabels": False}


def test_the_dashboard_ships_as_a_sidecar_configmap(gpu_plan: PlanResult):
    [configmap] = gpu_plan.of_type("kubernetes:core/v1:ConfigMap")
    assert configmap.parent == "gpu"
    assert configmap.inputs["metadata"]["namespace"] == "monitoring"
    assert configmap.inputs["metadata"]["labels"] == {"grafana_dashboard": "1"}
    assert "monitoring-release" in configmap.dependencies
    [document] = configmap.inputs["data"].values()
    shipped = json.loads(document)
    assert shipped["uid"] == GPU_DASHBOARD_UID
    assert shipped == gpu_dashboard()
    assert gpu_plan.outputs["dashboards"] == [GPU_DASHBOARD_TITLE]


def test_dashboard_covers_what_it_promises():
    titles = " / ".join(panel["title"] for panel in gpu_dashboard()["panels"]).lower()
    for topic in ("utilization", "memory used", "memory free", "power", "temperature", "tensor core"):
        assert topic in titles
    metrics = set().union(*(metric_names(e) for e in dashboard_expressions(gpu_dashboard())))
    assert {
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    } <= metrics


def test_dashboard_uses_only_metrics_the_exporter_emits(reference: Path):
    emitted = exported_metrics(reference)
    assert "DCGM_FI_DEV_GPU_UTIL" in emitted and "DCGM_FI_DRIVER_VERSION" not in emitted
    for expr in dashboard_expressions(gpu_dashboard()):
        assert metric_names(expr) <= emitted, expr
    for variable in gpu_dashboard()["templating"]["list"]:
        # label_values(METRIC{...}, label): the first argument is PromQL.
        selector = variable["query"].removeprefix("label_values(").rsplit(",", 1)[0]
        assert metric_names(selector) <= emitted, variable["query"]


def test_dashboard_groups_and_filters_only_on_exporter_labels():
    """With honorLabels false the target's own pod/namespace labels name the exporter pod, not the GPU's
    user, so panels stick to the exporter's labels."""
    for expr in dashboard_expressions(gpu_dashboard()):
        assert label_names(expr) <= DCGM_LABELS, expr
        assert {"Hostname"} <= label_names(expr), expr


def test_dashboard_queries_parse_with_promtool(tmp_path: Path):
    result = promtool_check(dashboard_expressions(gpu_dashboard()), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_query(tmp_path: Path):
    result = promtool_check(["sum by (Hostname (DCGM_FI_DEV_GPU_UTIL)"], tmp_path)
    assert result.returncode != 0


@pytest.mark.parametrize(
    ("expr", "metrics", "labels"),
    [
        ('sum by (Hostname) (rate(foo_total{a="b", c=~"x|y"}[5m])) / bar', {"foo_total", "bar"}, {"Hostname", "a", "c"}),
        ("histogram_quantile(0.99, sum by (le) (rate(vllm:e2e_seconds_bucket[$__rate_interval])))",
         {"vllm:e2e_seconds_bucket"}, {"le"}),
        ('max(up{job="x"} offset 1h) * on (instance) group_left (node) info', {"up", "info"}, {"job", "instance", "node"}),
        ("count(a) > 2e3 and b", {"a", "b"}, set()),
    ],
)  # fmt: skip
def test_promql_name_extraction(expr: str, metrics: set[str], labels: set[str]):
    assert metric_names(expr) == metrics
    assert label_names(expr) == labels

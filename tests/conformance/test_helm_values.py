"""Every Helm value the plan sets exists in the chart's upstream default values.yaml (../shared/reference).

A key that is not in the chart's values is silently ignored by Helm, so a typo or a key renamed upstream
would pass `pulumi up` and do nothing. Two kinds of paths are accepted without a counterpart, each listed
explicitly with the reason:
- FREE_FORM: maps the chart copies verbatim into a manifest (nodeSelector, a StorageSpec), whose keys are
  ours; the default there must be a map.
- SUBCHART_KEYS: keys of a subchart's own values.yaml, which the parent chart's values.yaml does not repeat;
  their first segment must be one of the chart's dependencies (Chart.yaml).

To cover another chart, add its reference folder to REFERENCE_DIRS and its accepted paths to the lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from selfhost.plan.runner import PlanResult
from tests.conformance.helm_values import (
    helm_merge,
    lookup,
    reference_chart,
    reference_values,
    releases,
    subchart_names,
    unknown_value_paths,
    value_paths,
)

# Chart name as released by the program -> folder in ../shared/reference.
REFERENCE_DIRS = {
    "nvidia-device-plugin": "nvidia-device-plugin",
    "dcgm-exporter": "dcgm-exporter",
    "kube-prometheus-stack": "kube-prometheus-stack",
    "aws-load-balancer-controller": "aws-load-balancer-controller",
}

FREE_FORM: Mapping[str, Mapping[str, str]] = {
    "dcgm-exporter": {"affinity": "a Kubernetes Affinity, copied into the DaemonSet's pod spec"},
    "kube-prometheus-stack": {
        "prometheus.prometheusSpec.nodeSelector": "node labels, copied into the Prometheus CR",
        "prometheus.prometheusSpec.storageSpec": "a prometheus-operator StorageSpec (emptyDir or a PVC template)",
        "alertmanager.alertmanagerSpec.nodeSelector": "node labels, copied into the Alertmanager CR",
        "prometheusOperator.nodeSelector": "node labels of the operator Deployment",
        "prometheusOperator.admissionWebhooks.patch.nodeSelector": "node labels of the webhook patch Jobs",
        "crds.upgradeJob.nodeSelector": "node labels of the CRD upgrade hook Job",
    },
    "aws-load-balancer-controller": {
        "nodeSelector": "node labels of the controller Deployment",
        "resources": "a container's ResourceRequirements",
        "podDisruptionBudget": "a PodDisruptionBudget spec (rendered when replicaCount > 1)",
        "defaultTags": "AWS tags the controller puts on what it creates",
        "serviceAccount.annotations": "the ServiceAccount's annotations (the IRSA role)",
    },
}

SUBCHART_KEYS: Mapping[str, Mapping[str, str]] = {
    "kube-prometheus-stack": {
        # grafana-community/helm-charts charts/grafana/values.yaml: `nodeSelector: {}` (read at chart 11.1.6,
        # the newest stored version; kube-prometheus-stack 88.5.3 pulls grafana 12.11.1, which keeps it).
        "grafana.nodeSelector": "grafana chart values.yaml nodeSelector",
        # prometheus-community/helm-charts charts/kube-state-metrics/values.yaml: `nodeSelector: {}`.
        "kube-state-metrics.nodeSelector": "kube-state-metrics chart values.yaml nodeSelector",
    },
}


def accepted_paths(chart: str) -> dict[str, str]:
    return {**FREE_FORM.get(chart, {}), **SUBCHART_KEYS.get(chart, {})}


def test_the_plans_install_the_charts_checked_here(plans: dict[str, PlanResult]):
    for variant in ("dev", "prod"):
        assert set(REFERENCE_DIRS) - {"aws-load-balancer-controller"} <= set(releases(plans[variant]))
    assert set(REFERENCE_DIRS) <= set(releases(plans["public-endpoint"]))


@pytest.mark.parametrize("variant", ["dev", "prod", "public-endpoint"])
def test_every_value_key_exists_in_the_chart_defaults(
    plans: dict[str, PlanResult], reference: Path, variant: str
):
    installed = releases(plans[variant])
    problems = {
        chart: unknown_value_paths(
            installed[chart]["values"], reference_values(reference, folder), accepted_paths(chart)
        )
        for chart, folder in REFERENCE_DIRS.items()
        if chart in installed
    }
    assert {chart: paths for chart, paths in problems.items() if paths} == {}


@pytest.mark.parametrize("chart", sorted(REFERENCE_DIRS))
def test_the_release_pins_the_version_the_reference_describes(
    plans: dict[str, PlanResult], reference: Path, chart: str
):
    upstream = reference_chart(reference, REFERENCE_DIRS[chart])
    installed = [releases(plan)[chart] for plan in plans.values() if chart in releases(plan)]
    assert installed
    for release in installed:
        assert release["version"] == str(upstream["version"])


@pytest.mark.parametrize("chart", sorted(FREE_FORM))
def test_free_form_paths_are_maps_in_the_chart_defaults(reference: Path, chart: str):
    defaults = reference_values(reference, REFERENCE_DIRS[chart])
    for path in FREE_FORM[chart]:
        assert isinstance(lookup(defaults, path), dict), path


@pytest.mark.parametrize("chart", sorted(SUBCHART_KEYS))
def test_subchart_keys_belong_to_a_dependency_and_are_not_in_the_parent_defaults(reference: Path, chart: str):
    defaults = reference_values(reference, REFERENCE_DIRS[chart])
    dependencies = subchart_names(reference_chart(reference, REFERENCE_DIRS[chart]))
    for path in SUBCHART_KEYS[chart]:
        assert path.split(".")[0] in dependencies, path
        assert path not in set(value_paths(defaults)), (
            f"{path} is in the parent's values.yaml: not a subchart key"
        )


def test_every_accepted_path_is_used(plans: dict[str, PlanResult]):
    """An allow-list entry no release needs any more is removed, so the list never hides a new typo."""
    for chart in REFERENCE_DIRS:
        used = {
            path
            for plan in plans.values()
            if chart in releases(plan)
            for path in value_paths(releases(plan)[chart]["values"])
        }
        assert set(accepted_paths(chart)) <= used, chart


def test_unknown_value_paths_finds_typos_and_maps_over_scalars():
    defaults = {"a": {"b": 1, "c": {}}, "d": None, "e": [1]}
    values = {"a": {"b": 2, "x": 3, "c": {"free": 1}}, "d": {"y": 1}, "e": [2], "z": 1}
    assert unknown_value_paths(values, defaults, {"a.c": "free-form"}) == [
        "a.x",
        "d (a map where the default is None)",
        "z",
    ]
    assert unknown_value_paths(values, defaults, {}) == [
        "a.x",
        "a.c.free",
        "d (a map where the default is None)",
        "z",
    ]


def test_helm_merge_merges_maps_replaces_lists_and_drops_nulls():
    defaults = {"a": {"b": 1, "c": [1, 2]}, "d": {"e": 1}, "f": 1}
    merged = helm_merge(defaults, {"a": {"c": [3]}, "d": None, "g": {"h": 1}})
    assert merged == {"a": {"b": 1, "c": [3]}, "f": 1, "g": {"h": 1}}
    assert defaults == {"a": {"b": 1, "c": [1, 2]}, "d": {"e": 1}, "f": 1}  # inputs untouched

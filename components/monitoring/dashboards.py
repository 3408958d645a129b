"""Grafana dashboards as plain data: panels, variables, and the labelled ConfigMap that ships a dashboard.

Grafana's dashboard sidecar (configured by `components/monitoring/component.py`) loads every ConfigMap that carries
`DASHBOARD_LABEL: DASHBOARD_LABEL_VALUE`, in any namespace, so a component ships a dashboard by creating
`dashboard_configmap(...)`. Nothing here touches Pulumi.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# kube-prometheus-stack 88.5.3 values.yaml: grafana.sidecar.dashboards.label / labelValue.
DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_LABEL_VALUE = "1"
# kube-prometheus-stack 88.5.3 values.yaml: grafana.sidecar.datasources provisions Prometheus with uid
# `prometheus`, so dashboards can name it without a datasource variable.
PROMETHEUS_DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "prometheus"}

PANEL_WIDTH = 12  # two panels per row on Grafana's 24-column grid
PANEL_HEIGHT = 8


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel and how its series are named in the legend."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str  # a Grafana unit id, e.g. percent (0-100), percentunit (0-1), mbytes (MiB), watt, celsius
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Variable:
    """A dashboard variable filled from `label_values(...)` (multi-select, with an "All" that matches .*)."""

    name: str
    label: str
    query: str


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    options: dict[str, Any] = (
        {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
        if panel.kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    )
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": PROMETHEUS_DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": PANEL_WIDTH, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": PROMETHEUS_DATASOURCE,
                "expr": query.expr,
                "legendFormat": query.legend,
            }
            for index, query in enumerate(panel.queries)
        ],
    }


def variable_json(variable: Variable) -> dict[str, Any]:
    return {
        "name": variable.name,
        "label": variable.label,
        "type": "query",
        "datasource": PROMETHEUS_DATASOURCE,
        "query": variable.query,
        "definition": variable.query,
        "refresh": 2,  # on time range change, so nodes Karpenter bought since loading appear
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "sort": 1,
        "current": {},
    }


def dashboard(
    uid: str, title: str, tags: Sequence[str], variables: Sequence[Variable], panels: Sequence[Panel]
) -> dict[str, Any]:
    """A whole dashboard, panels laid out two per row in the order given."""
    return {
        "uid": uid,
        "title": title,
        "tags": list(tags),
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": [variable_json(variable) for variable in variables]},
        "panels": [
            panel_json(panel, index + 1, (index % 2) * PANEL_WIDTH, (index // 2) * PANEL_HEIGHT)
            for index, panel in enumerate(panels)
        ],
    }


def dashboard_configmap(name: str, namespace: str, dashboard_json: dict[str, Any]) -> dict[str, Any]:
    """The ConfigMap Grafana's sidecar picks up: one JSON file named after the dashboard."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {DASHBOARD_LABEL: DASHBOARD_LABEL_VALUE},
        },
        "data": {f"{name}.json": json.dumps(dashboard_json, indent=2, sort_keys=True)},
    }

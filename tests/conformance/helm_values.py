"""Helm values against a chart's default values.yaml: unknown keys, and the values Helm would use.

Reusable for any chart whose values.yaml is in the reference folder: `unknown_value_paths(ours, defaults,
accepted)` lists every path of our values that the defaults do not define, except below the `accepted`
paths (free-form maps the chart copies verbatim, such as nodeSelector, and keys of a subchart's own
values.yaml that the parent chart's file does not repeat). Paths are dotted: `grafana.nodeSelector`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from selfhost.plan.command import HELM_RELEASE
from selfhost.plan.runner import PlanResult


def reference_values(reference: Path, chart_dir: str) -> dict[str, Any]:
    """The chart's default values; a copy, so a caller may change it."""
    return copy.deepcopy(_parsed_values(reference / chart_dir / "values.yaml"))


@functools.cache
def _parsed_values(path: Path) -> dict[str, Any]:
    """Parsed once per session: kube-prometheus-stack's values.yaml alone takes a quarter second."""
    return yaml.safe_load(path.read_text()) or {}


def reference_chart(reference: Path, chart_dir: str) -> dict[str, Any]:
    return yaml.safe_load((reference / chart_dir / "Chart.yaml").read_text())


def subchart_names(chart: Mapping[str, Any]) -> set[str]:
    """The keys under which a parent chart passes values to its dependencies (alias, else name)."""
    return {dependency.get("alias") or dependency["name"] for dependency in chart.get("dependencies") or []}


def unknown_value_paths(
    values: Mapping[str, Any], defaults: Mapping[str, Any], accepted: Mapping[str, str], prefix: str = ""
) -> list[str]:
    """Paths of `values` that `defaults` lacks. A map where the default is not a map counts as unknown:
    nothing below it can be checked."""
    unknown: list[str] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if path in accepted:
            continue
        if key not in defaults:
            unknown.append(path)
        elif isinstance(value, Mapping):
            default = defaults[key]
            if isinstance(default, Mapping):
                unknown.extend(unknown_value_paths(value, default, accepted, f"{path}."))
            else:
                unknown.append(f"{path} (a map where the default is {default!r})")
    return unknown


def value_paths(values: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Every path of a values tree, maps and leaves."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, Mapping):
            yield from value_paths(value, f"{path}.")


def lookup(values: Mapping[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        node = node[key]
    return node


def helm_merge(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The values Helm renders with: maps merge key by key, anything else (lists included) replaces the
    default, and null removes the key (Helm's coalesce)."""
    merged = copy.deepcopy(dict(defaults))
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def releases(plan: PlanResult) -> dict[str, dict[str, Any]]:
    """Helm releases of a plan by chart name: their inputs (chart, version, repositoryOpts, values...)."""
    return {resource.inputs["chart"]: resource.inputs for resource in plan.of_type(HELM_RELEASE)}

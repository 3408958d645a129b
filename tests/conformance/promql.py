"""PromQL of dashboards and rules, checked with the real parser (promtool) and for the metric names used.

promtool has no offline "parse this expression" command (`promtool query` needs a server), so each
expression becomes a recording rule in a throwaway rule file and `promtool check rules` parses it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

# Grafana replaces these before querying; promtool needs a duration in their place.
GRAFANA_DURATIONS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MODIFIER = re.compile(r"\boffset\s+-?\w+|@\s*[\w.()]+")
_NUMBER = re.compile(r"(?<![\w:])(0x[0-9a-fA-F]+|\d+(\.\d+)?([eE][+-]?\d+)?)(?![\w:])")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)")


def dashboard_expressions(dashboard_json: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a Grafana dashboard's panels (its variables hold Grafana's label_values,
    not PromQL)."""
    return [target["expr"] for panel in dashboard_json["panels"] for target in panel["targets"]]


def as_promql(expr: str) -> str:
    for variable, duration in GRAFANA_DURATIONS.items():
        expr = expr.replace(variable, duration)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers outside strings, label matchers, ranges and
    grouping lists that are neither keywords nor function or aggregation calls."""
    text = _STRING.sub('""', as_promql(expr))
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _MODIFIER.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if match.group() in KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(match.group())
    return names


def label_names(expr: str) -> set[str]:
    """Label names an expression matches on or groups by."""
    text = _STRING.sub('""', as_promql(expr))
    names = {match.group(1) for block in _MATCHERS.findall(text) for match in _LABEL_NAME.finditer(block)}
    for _, labels in _GROUPING.findall(text):
        names.update(label.strip() for label in labels.split(",") if label.strip())
    return names


def promtool() -> str:
    """The promtool binary; CI installs it (Debian `prometheus`), elsewhere its absence skips the test."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing; .ci/run installs the Debian package prometheus")
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool with these arguments; the caller checks the return code and output."""
    return subprocess.run([promtool(), *args], capture_output=True, text=True, check=False)


def promtool_check(exprs: Sequence[str], directory: Path) -> subprocess.CompletedProcess[str]:
    """Run `promtool check rules` on one recording rule per expression."""
    rules = [{"record": f"dashboard:query_{index}", "expr": as_promql(e)} for index, e in enumerate(exprs)]
    rule_file = directory / "queries.rules.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    return run_promtool("check", "rules", str(rule_file))

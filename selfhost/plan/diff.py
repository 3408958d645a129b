"""What changes between two offline plans (say the base branch's and a pull request's), as Markdown.

Resources are matched by type and name (and parent, where a type and name repeat), so the diff needs no cloud
state and no credentials. Inputs are compared as the plan recorded them (secrets are "[secret]" on both
sides, so a changed secret does not show); JSON text inputs such as IAM policy documents are compared as the
documents they hold. The cost comes from each plan's report.json.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfhost.automation.summary import DEFAULT_MAX_CHARS
from stacks.cost import HOURS_PER_MONTH

MAX_INPUTS_PER_RESOURCE = 40
SIMPLE_KEY = re.compile(r"[A-Za-z_$][\w$-]*")


class PlanDiffError(Exception):
    """A plan directory that cannot be compared; the message says which and why."""


class _Missing:
    def __repr__(self) -> str:
        return "(none)"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class PlanFiles:
    resources: list[dict[str, Any]]
    report: dict[str, Any]


@dataclass(frozen=True)
class InputChange:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class ChangedResource:
    key: str
    changes: list[InputChange]


@dataclass(frozen=True)
class CostChange:
    name: str
    old: float | None
    new: float | None


@dataclass(frozen=True)
class PlanDiff:
    stack: str
    added: list[str]
    removed: list[str]
    changed: list[ChangedResource]
    unchanged: int
    cost_before: float
    cost_after: float
    cost_items: list[CostChange]
    serving_before: str
    serving_after: str


def read_plan(directory: Path) -> PlanFiles:
    resources_file, report_file = directory / "resources.json", directory / "report.json"
    if not resources_file.is_file() or not report_file.is_file():
        raise PlanDiffError(
            f"{directory} holds no plan (resources.json and report.json): write one there with "
            "`selfhost plan STACK --out DIR` (e.g. on the base branch) and compare again"
        )
    return PlanFiles(json.loads(resources_file.read_text()), json.loads(report_file.read_text()))


def resource_keys(resources: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Each resource by `type name`, or `type name (in parent)` where type and name repeat in the plan."""
    repeats = Counter((resource["type"], resource["name"]) for resource in resources)
    keyed: dict[str, Mapping[str, Any]] = {}
    for resource in resources:
        key = f"`{resource['type']}` **{resource['name']}**"
        if repeats[(resource["type"], resource["name"])] > 1:
            key += f" (in {resource.get('parent') or 'the stack'})"
        keyed[key] = resource
    return keyed


def property_path(parent: str, key: str | int) -> str:
    """Pulumi's property path syntax: `a.b[0]["key.with.dots"]`."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if SIMPLE_KEY.fullmatch(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key)}]"


def _json_document(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return None


def input_changes(old: Any, new: Any, path: str = "") -> list[InputChange]:
    """Every path whose value differs. Lists of objects are compared by index; lists of plain values (a
    container's args) by their items, so a changed `--max-model-len 32768` shows as that one item."""
    if old == new:
        return []
    old_document, new_document = _json_document(old), _json_document(new)
    if old_document is not None and new_document is not None:
        return input_changes(old_document, new_document, path)
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes: list[InputChange] = []
        for key in sorted(set(old) | set(new), key=str):
            changes += input_changes(
                old.get(key, MISSING), new.get(key, MISSING), property_path(path, str(key))
            )
        return changes
    if isinstance(old, list) and isinstance(new, list):
        if any(isinstance(item, (Mapping, list)) for item in [*old, *new]):
            changes = []
            for index in range(max(len(old), len(new))):
                before = old[index] if index < len(old) else MISSING
                after = new[index] if index < len(new) else MISSING
                changes += input_changes(before, after, property_path(path, index))
            return changes
        return list_item_changes(old, new, path)
    return [InputChange(path or "(inputs)", old, new)]


def list_item_changes(old: list[Any], new: list[Any], path: str) -> list[InputChange]:
    """The items of a list of plain values that were replaced, removed or inserted, at their positions in the
    new list (the old list's for removals)."""
    changes = []
    matcher = difflib.SequenceMatcher(
        a=[json.dumps(item) for item in old], b=[json.dumps(item) for item in new]
    )
    for operation, old_start, old_end, new_start, new_end in matcher.get_opcodes():
        if operation == "equal":
            continue
        before = old[old_start:old_end] or MISSING
        after = new[new_start:new_end] or MISSING
        index = new_start if operation != "delete" else old_start
        changes.append(
            InputChange(
                property_path(path, index),
                before[0] if before is not MISSING and len(before) == 1 else before,
                after[0] if after is not MISSING and len(after) == 1 else after,
            )
        )
    return changes


def _cost_items(report: Mapping[str, Any]) -> dict[str, float]:
    return {item["name"]: float(item["usd_per_hour"]) for item in report["cost"]["items"]}


def _serving(report: Mapping[str, Any]) -> str:
    return f"{report['model']} on {report['sizing']['replicas']} x {report['instance_type']}"


def diff_plans(base: PlanFiles, new: PlanFiles) -> PlanDiff:
    before, after = resource_keys(base.resources), resource_keys(new.resources)
    changed: list[ChangedResource] = []
    unchanged = 0
    for key in (key for key in after if key in before):
        changes = input_changes(before[key]["inputs"], after[key]["inputs"])
        if before[key].get("parent") != after[key].get("parent"):
            changes.insert(0, InputChange("(parent)", before[key].get("parent"), after[key].get("parent")))
        if changes:
            changed.append(ChangedResource(key, changes))
        else:
            unchanged += 1
    old_items, new_items = _cost_items(base.report), _cost_items(new.report)
    cost_items = [
        CostChange(name, old_items.get(name), new_items.get(name))
        for name in [*old_items, *(name for name in new_items if name not in old_items)]
        if old_items.get(name) != new_items.get(name)
    ]
    return PlanDiff(
        stack=str(new.report.get("stack", "")),
        added=[key for key in after if key not in before],
        removed=[key for key in before if key not in after],
        changed=changed,
        unchanged=unchanged,
        cost_before=float(base.report["cost"]["total_usd_per_hour"]),
        cost_after=float(new.report["cost"]["total_usd_per_hour"]),
        cost_items=cost_items,
        serving_before=_serving(base.report),
        serving_after=_serving(new.report),
    )


def _value(value: Any) -> str:
    """A value in full: a PR comment is bounded as a whole (diff_markdown), never by cutting a value."""
    text = repr(value) if value is MISSING else json.dumps(value, sort_keys=True)
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _signed(value: float, decimals: int = 4) -> str:
    return f"{'+' if value >= 0 else '-'}${abs(value):,.{decimals}f}"


def diff_markdown(diff: PlanDiff, base_label: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    delta = diff.cost_after - diff.cost_before
    lines = [
        f"### Offline plan diff of stack `{diff.stack}`",
        "",
        f"Compared with the plan of {base_label}; both come from the program run under mocks (no cloud access).",
        "",
    ]
    if diff.serving_before != diff.serving_after:
        lines += [f"**Serving:** {diff.serving_before} → {diff.serving_after}", ""]
    lines += [
        f"**Cost:** ${diff.cost_before:.4f}/h → ${diff.cost_after:.4f}/h "
        f"({_signed(delta)}/h, about {_signed(delta * HOURS_PER_MONTH, 0)} a month)",
        "",
    ]
    if diff.cost_items:
        lines += ["| Cost item | Before $/h | After $/h | Change $/h |", "|---|---:|---:|---:|"]
        for item in diff.cost_items:
            change = (item.new or 0.0) - (item.old or 0.0)
            lines.append(f"| {item.name} | {_usd(item.old)} | {_usd(item.new)} | {_signed(change)} |")
        lines.append("")
    lines += [
        f"**Resources:** {len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed, "
        f"{diff.unchanged} unchanged.",
        "",
    ]
    if not (diff.added or diff.removed or diff.changed):
        return "\n".join(lines)
    sections: list[list[str]] = []
    if diff.added:
        sections.append(["#### Added", "", *(f"- {key}" for key in diff.added), ""])
    if diff.removed:
        sections.append(["#### Removed", "", *(f"- {key}" for key in diff.removed), ""])
    if diff.changed:
        sections.append(["#### Changed", ""])
        for resource in diff.changed:
            shown = resource.changes[:MAX_INPUTS_PER_RESOURCE]
            section = [f"{resource.key}", "", "| Input | Before | After |", "|---|---|---|"]
            section += [
                f"| `{change.path}` | {_value(change.old)} | {_value(change.new)} |" for change in shown
            ]
            if len(resource.changes) > len(shown):
                section.append(f"| … {len(resource.changes) - len(shown)} more | | |")
            sections.append([*section, ""])
    used = sum(len(line) + 1 for line in lines)
    for index, section in enumerate(sections):
        size = sum(len(line) + 1 for line in section)
        if used + size > max_chars:
            left = len(sections) - index
            lines.append(
                f"_{left} more section(s) left out for length: run `selfhost plan {diff.stack} --diff BASE_DIR` "
                "to see them all._"
            )
            break
        lines += section
        used += size
    return "\n".join(lines)

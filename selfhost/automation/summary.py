"""What a `pulumi preview` will change, as Markdown for a pull request or a CI step summary.

Everything here works on engine events in the engine's own JSON shape (the `EngineEvent` type of the Pulumi
CLI's apitype package: `resourcePreEvent.metadata.{op, urn, type, keys, diffs, detailedDiff}` and
`summaryEvent.resourceChanges`), so the builders are plain functions over lists of dicts. Property values
are never read from the events: the only values shown are those in the CLI's own `--diff` text, which masks
secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

# The logical operations a reviewer cares about; the engine's other steps (create-replacement,
# delete-replaced, same, read, refresh...) are parts of these or no change at all.
CHANGE_OPS = ("create", "update", "replace", "delete")
OP_TITLES = {"create": "Create", "update": "Update", "replace": "Replace", "delete": "Delete"}
# A GitHub comment holds at most 65,536 characters; leave room for the marker and a header around it.
DEFAULT_MAX_CHARS = 60_000
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# SummaryEvent's policy packs field kept its Go name (apitype/events.go: `json:"PolicyPacks"`).
SPECIAL_JSON_KEYS = {"policy_packs": "PolicyPacks"}


@dataclass(frozen=True)
class ResourceChange:
    op: str
    type: str
    name: str
    urn: str
    properties: tuple[str, ...]
    replace_reasons: tuple[str, ...]


def engine_event_json(value: Any) -> Any:
    """An SDK engine event object (`pulumi.automation.events`) back in the engine's JSON shape."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(engine_event_json(key)): engine_event_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [engine_event_json(item) for item in value]
    if hasattr(value, "__dict__"):
        return {
            _json_key(key): engine_event_json(item) for key, item in vars(value).items() if item is not None
        }
    return value


def _json_key(name: str) -> str:
    if name in SPECIAL_JSON_KEYS:
        return SPECIAL_JSON_KEYS[name]
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def resource_name(urn: str) -> str:
    """The logical name at the end of a URN (urn:pulumi:STACK::PROJECT::TYPE$TYPE::NAME)."""
    return urn.rsplit("::", 1)[-1]


def resource_changes(events: Iterable[Mapping[str, Any]]) -> list[ResourceChange]:
    """Each resource the operation creates, updates, replaces or deletes, once, in event order."""
    changes: list[ResourceChange] = []
    seen: set[tuple[str, str]] = set()
    for event in events:
        metadata = (event.get("resourcePreEvent") or {}).get("metadata") or {}
        op, urn = metadata.get("op"), metadata.get("urn", "")
        if op not in CHANGE_OPS or (urn, op) in seen:
            continue
        seen.add((urn, op))
        detailed: Mapping[str, Any] = metadata.get("detailedDiff") or {}
        if detailed:
            properties = tuple(
                f"{path} ({diff.get('diffKind', 'update')})" for path, diff in sorted(detailed.items())
            )
        else:
            properties = tuple(sorted(metadata.get("diffs") or ()))
        changes.append(
            ResourceChange(
                op=op,
                type=metadata.get("type", ""),
                name=resource_name(urn),
                urn=urn,
                properties=properties,
                replace_reasons=tuple(metadata.get("keys") or ()) if op == "replace" else (),
            )
        )
    return changes


@dataclass(frozen=True)
class PolicyViolation:
    policy: str
    pack: str
    level: str
    resource: str
    message: str

    @property
    def mandatory(self) -> bool:
        return self.level == "mandatory"

    def sentence(self) -> str:
        where = f" on {self.resource}" if self.resource else ""
        return f"policy {self.policy} ({self.level}){where}: {self.message.strip()}"


def policy_violations(events: Iterable[Mapping[str, Any]]) -> list[PolicyViolation]:
    """Every policy event of the operation (`policyEvent`: policyName, policyPackName, enforcementLevel,
    resourceUrn, message in apitype/events.go), once each, in event order."""
    found: list[PolicyViolation] = []
    for event in events:
        policy = event.get("policyEvent")
        if not policy:
            continue
        violation = PolicyViolation(
            policy=policy.get("policyName", "?"),
            pack=policy.get("policyPackName", "?"),
            level=str(policy.get("enforcementLevel", "")).lower(),
            resource=resource_name(policy.get("resourceUrn") or "") if policy.get("resourceUrn") else "",
            message=strip_ansi(policy.get("message", "")),
        )
        if violation not in found:
            found.append(violation)
    return found


# The engine's steps that change a resource in the cloud, each reported done by a resOutputsEvent.
MUTATING_STEPS = frozenset({*CHANGE_OPS, "create-replacement", "delete-replaced"})


def changed_anything(events: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the operation completed a step that changed a resource before it stopped."""
    return any(
        ((event.get("resOutputsEvent") or {}).get("metadata") or {}).get("op") in MUTATING_STEPS
        for event in events
    )


def mandatory_violations(events: Iterable[Mapping[str, Any]]) -> list[PolicyViolation]:
    """The violations that stop an update: those of mandatory policies."""
    return [violation for violation in policy_violations(events) if violation.mandatory]


def change_counts(events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Counts by operation, plus `same`: the engine's summary when it sent one, else counted from the steps."""
    events = list(events)
    summaries = [event["summaryEvent"] for event in events if event.get("summaryEvent")]
    if summaries:
        totals: Mapping[str, Any] = summaries[-1].get("resourceChanges") or {}
        return {op: int(totals.get(op, 0)) for op in (*CHANGE_OPS, "same")}
    counts: dict[str, int] = dict.fromkeys((*CHANGE_OPS, "same"), 0)
    for change in resource_changes(events):
        counts[change.op] += 1
    return counts


def strip_ansi(text: str) -> str:
    return ANSI_ESCAPE.sub("", text)


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _clip(text: str, limit: int) -> tuple[str, int]:
    """The first lines of `text` that fit in `limit` characters, and how many lines were left out."""
    lines = text.splitlines()
    kept: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > limit:
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept), len(lines) - len(kept)


def preview_markdown(
    stack: str,
    events: Iterable[Mapping[str, Any]],
    diff_text: str = "",
    max_chars: int = DEFAULT_MAX_CHARS,
) -> str:
    """The preview of `stack` for a reviewer: counts, what is replaced or deleted, what changes, the diff."""
    events = list(events)
    counts = change_counts(events)
    changes = resource_changes(events)
    lines = [
        f"### Pulumi preview of stack `{stack}`",
        "",
        "| Create | Update | Replace | Delete | Unchanged |",
        "|---:|---:|---:|---:|---:|",
        f"| {counts['create']} | {counts['update']} | {counts['replace']} | {counts['delete']} | {counts['same']} |",
        "",
    ]
    if not any(counts[op] for op in CHANGE_OPS):
        lines += ["No changes.", ""]
    violations = policy_violations(events)
    if violations:
        mandatory = sum(violation.mandatory for violation in violations)
        lines += [
            f"**Policy violations** ({mandatory} mandatory: {'the update would be stopped' if mandatory else 'none'}):",
            "",
            *(f"- {_cell(violation.sentence())}" for violation in violations),
            "",
        ]
    replaced = [change for change in changes if change.op == "replace"]
    if replaced:
        lines += ["**Replaced** (deleted and created again; data on them is lost):", ""]
        for change in replaced:
            reasons = ", ".join(f"`{key}`" for key in change.replace_reasons)
            lines.append(
                f"- `{change.type}` **{change.name}**" + (f" because of {reasons}" if reasons else "")
            )
        lines.append("")
    deleted = [change for change in changes if change.op == "delete"]
    if deleted:
        lines += ["**Deleted:**", ""]
        lines += [f"- `{change.type}` **{change.name}**" for change in deleted]
        lines.append("")
    if changes:
        lines += ["| Operation | Type | Name | Changed properties |", "|---|---|---|---|"]
        for change in changes:
            properties = ", ".join(f"`{prop}`" for prop in change.properties) or "-"
            lines.append(f"| {change.op} | `{change.type}` | {_cell(change.name)} | {_cell(properties)} |")
        lines.append("")
    text = "\n".join(lines)
    diff_text = strip_ansi(diff_text).strip("\n")
    budget = max_chars - len(text) - 200
    if diff_text and budget <= 0:
        text += "_The diff from `pulumi preview --diff` is in the job log._\n"
    elif diff_text:
        shown, left_out = _clip(diff_text, budget)
        fence = _fence(shown)
        text += "\n".join(
            [
                "<details><summary>Diff from <code>pulumi preview --diff</code></summary>",
                "",
                fence,
                shown,
                fence,
                *([f"_{left_out} more lines are in the job log._"] if left_out else []),
                "</details>",
                "",
            ]
        )
    return text


def failure_markdown(
    stack: str, operation: str, sentence: str, events: Iterable[Mapping[str, Any]] = ()
) -> str:
    """A failed operation: why, and each mandatory policy violation that stopped it."""
    stopped_by = mandatory_violations(events)
    lines = [f"### Pulumi {operation} of stack `{stack}`", "", f"**Failed.** {sentence}"]
    if stopped_by:
        lines += ["", "Stopped by the policy pack:", "", *(f"- {_cell(v.sentence())}" for v in stopped_by)]
    return "\n".join(lines) + "\n"


def not_deployed_markdown(stack: str) -> str:
    return (
        f"### Pulumi preview of stack `{stack}`\n\nStack `{stack}` is not deployed yet: nothing to compare with. "
        "Its first deploy creates it.\n"
    )

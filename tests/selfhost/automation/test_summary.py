"""The preview's Markdown summary, built from hand-made engine events in the engine's JSON shape."""

from pulumi.automation import EngineEvent

from selfhost.automation.summary import (
    change_counts,
    engine_event_json,
    preview_markdown,
    resource_changes,
)

STACK_URN = "urn:pulumi:dev::self-hosted-llm::pulumi:pulumi:Stack::self-hosted-llm-dev"


def _urn(type_: str, name: str) -> str:
    return f"urn:pulumi:dev::self-hosted-llm::pulumi:pulumi:Stack${type_}::{name}"


def _step(op: str, type_: str, name: str, **metadata) -> dict:
    return {
        "sequence": 0,
        "timestamp": 0,
        "resourcePreEvent": {"metadata": {"op": op, "urn": _urn(type_, name), "type": type_, **metadata}},
    }


DEPLOYMENT = "kubernetes:apps/v1:Deployment"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
QUEUE = "aws:sqs/queue:Queue"
ROLE = "aws:iam/role:Role"

EVENTS = [
    {"sequence": 1, "timestamp": 0, "preludeEvent": {"config": {}}},
    _step("same", "pulumi:pulumi:Stack", "self-hosted-llm-dev"),
    _step("create", ROLE, "llm-dev-ci"),
    _step(
        "update",
        DEPLOYMENT,
        "vllm",
        diffs=["spec"],
        detailedDiff={"spec.replicas": {"diffKind": "update", "inputDiff": True}},
    ),
    # A replacement is three engine steps; only the logical `replace` counts, with the keys that force it.
    _step("create-replacement", NODE_CLASS, "gpu", keys=["spec.amiSelectorTerms"]),
    _step(
        "replace",
        NODE_CLASS,
        "gpu",
        keys=["spec.amiSelectorTerms"],
        detailedDiff={"spec.amiSelectorTerms[0].alias": {"diffKind": "update-replace", "inputDiff": True}},
    ),
    _step("delete-replaced", NODE_CLASS, "gpu"),
    _step("delete", QUEUE, "llm-dev-interruptions"),
    # The engine may send the same step again (preview then resOutputs); it is counted once.
    _step("delete", QUEUE, "llm-dev-interruptions"),
]
SUMMARY = {
    "sequence": 99,
    "timestamp": 0,
    "summaryEvent": {
        "maybeCorrupt": False,
        "durationSeconds": 4,
        "resourceChanges": {"same": 30, "create": 1, "update": 1, "replace": 1, "delete": 1},
        "PolicyPacks": {},
    },
}


def test_changes_are_the_logical_operations_once_each_in_order():
    changes = resource_changes(EVENTS)
    assert [(c.op, c.type, c.name) for c in changes] == [
        ("create", ROLE, "llm-dev-ci"),
        ("update", DEPLOYMENT, "vllm"),
        ("replace", NODE_CLASS, "gpu"),
        ("delete", QUEUE, "llm-dev-interruptions"),
    ]
    assert changes[1].properties == ("spec.replicas (update)",)
    assert changes[2].replace_reasons == ("spec.amiSelectorTerms",)


def test_counts_come_from_the_summary_event_when_there_is_one():
    assert change_counts([*EVENTS, SUMMARY]) == {
        "create": 1,
        "update": 1,
        "replace": 1,
        "delete": 1,
        "same": 30,
    }


def test_counts_fall_back_to_the_steps_without_a_summary_event():
    # Steps: 1 create, 1 update, 1 replace (of three replacement steps), 1 delete (sent twice); `same` is not
    # counted from steps.
    assert change_counts(EVENTS) == {"create": 1, "update": 1, "replace": 1, "delete": 1, "same": 0}


def test_markdown_names_replaced_and_deleted_resources_and_the_changed_properties():
    markdown = preview_markdown("dev", [*EVENTS, SUMMARY])
    assert markdown.startswith("### Pulumi preview of stack `dev`\n")
    assert "| 1 | 1 | 1 | 1 | 30 |" in markdown
    assert f"- `{NODE_CLASS}` **gpu** because of `spec.amiSelectorTerms`" in markdown
    assert f"**Deleted:**\n\n- `{QUEUE}` **llm-dev-interruptions**" in markdown
    assert f"| update | `{DEPLOYMENT}` | vllm | `spec.replicas (update)` |" in markdown
    assert f"| create | `{ROLE}` | llm-dev-ci | - |" in markdown
    assert "<details>" not in markdown


def test_markdown_of_no_changes_says_so():
    summary = {**SUMMARY, "summaryEvent": {**SUMMARY["summaryEvent"], "resourceChanges": {"same": 12}}}
    markdown = preview_markdown("prod", [_step("same", "pulumi:pulumi:Stack", "x"), summary])
    assert "| 0 | 0 | 0 | 0 | 12 |" in markdown
    assert "No changes." in markdown
    assert "**Replaced**" not in markdown and "**Deleted:**" not in markdown


def test_the_cli_diff_is_attached_without_colors_and_cut_to_the_limit():
    diff_lines = [f"\x1b[32m+ line {i:03d} ```\x1b[0m" for i in range(500)]
    markdown = preview_markdown("dev", [*EVENTS, SUMMARY], "\n".join(diff_lines), max_chars=4000)
    assert len(markdown) <= 4000
    assert "\x1b[" not in markdown
    # The text holds a run of three backticks, so the fence is four long.
    assert "\n````\n+ line 000 ```\n" in markdown
    assert "more lines are in the job log._" in markdown
    assert "+ line 499" not in markdown


def test_sdk_event_objects_turn_back_into_the_engine_json_shape():
    raw = {
        "sequence": 5,
        "timestamp": 1700000000,
        "resourcePreEvent": {
            "metadata": {
                "op": "update",
                "urn": _urn(DEPLOYMENT, "vllm"),
                "type": DEPLOYMENT,
                "provider": "urn:pulumi:dev::self-hosted-llm::pulumi:providers:kubernetes::k8s::id",
                "keys": [],
                "diffs": ["spec"],
                "detailedDiff": {"spec.replicas": {"diffKind": "update", "inputDiff": True}},
                "logical": True,
            },
            "planning": True,
        },
    }
    assert engine_event_json(EngineEvent.from_json(raw)) == raw
    assert engine_event_json(EngineEvent.from_json(SUMMARY)) == SUMMARY

"""The Load Balancer Controller's policy is upstream's iam_policy.json (v3.5.0), statement for statement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.ingress.iam import controller_policy

UPSTREAM_STATEMENTS = 16


@pytest.fixture(scope="module")
def upstream_text(reference: Path) -> str:
    return (reference / "aws-load-balancer-controller" / "iam_policy.json").read_text()


def rendered(partition: str) -> dict[str, Any]:
    """The policy as AWS receives it: through JSON."""
    return json.loads(json.dumps(controller_policy(partition)))


def assert_same_statements(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert len(theirs["Statement"]) == UPSTREAM_STATEMENTS
    assert len(ours["Statement"]) == UPSTREAM_STATEMENTS
    for index, (mine, upstream) in enumerate(zip(ours["Statement"], theirs["Statement"], strict=True)):
        assert mine == upstream, f"statement {index}"
    assert ours == theirs


def test_commercial_partition_is_upstream_statement_for_statement(upstream_text):
    assert_same_statements(rendered("aws"), json.loads(upstream_text))


def test_china_partition_is_upstream_with_its_partition_in_every_arn(upstream_text):
    upstream = json.loads(upstream_text)
    expected = json.loads(upstream_text.replace("arn:aws:", "arn:aws-cn:"))
    changed = [
        index
        for index, (before, after) in enumerate(
            zip(upstream["Statement"], expected["Statement"], strict=True)
        )
        if before != after
    ]
    assert len(changed) == 6, "upstream names ARNs in six statements"

    policy = rendered("aws-cn")
    assert_same_statements(policy, expected)
    for index, statement in enumerate(policy["Statement"]):
        assert "arn:aws:" not in json.dumps(statement), f"statement {index}"

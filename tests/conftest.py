"""Shared fixtures: plans of the real stacks, a plan of any config, and the upstream reference data."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from selfhost.plan.runner import PlanResult, plan_stack, run_program, stack_config

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference() -> Path:
    """../shared/reference, read in place: required in CI, skipped in a user's clone that lacks it."""
    if not REFERENCE.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{REFERENCE} is missing; CI must run the conformance tests against it")
        pytest.skip(f"{REFERENCE} is not beside this clone (it ships with the development workspace)")
    return REFERENCE


@pytest.fixture(scope="session")
def dev_plan() -> PlanResult:
    return plan_stack("dev")


@pytest.fixture(scope="session")
def prod_plan() -> PlanResult:
    return plan_stack("prod")


@pytest.fixture(scope="session")
def plan_with() -> Callable[..., PlanResult]:
    """Plan the dev stack with some keys overridden (fully qualified, as text or YAML values).

    Session-scoped (it holds no state) so that module-scoped fixtures can plan variants with it too."""

    def plan(overrides: Mapping[str, object], stack: str = "dev") -> PlanResult:
        config, secret_keys = stack_config(stack)
        for key, value in overrides.items():
            config[key] = value if isinstance(value, str) else json.dumps(value)
        return run_program(stack, config, secret_keys)

    return plan

"""Shared fixtures: plans of the real stacks, a plan of any config, and the upstream reference data."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from selfhost.plan.runner import PlanResult, plan_stack, run_program, stack_config
from tests.variants import PUBLIC_ENDPOINT

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
REFERENCE = SHARED / "reference"
CHARTS = SHARED / "charts"


def upstream_copy(directory: Path, holds: str) -> Path:
    """A folder of upstream material read in place from a `shared/` folder beside the clone. The project's CI
    has it and must run these tests; a clone without it (anyone else's) skips them, saying what is missing."""
    if directory.is_dir():
        return directory
    if os.environ.get("CI") == "true":
        pytest.fail(f"{directory} is missing; CI must run the conformance tests against it")
    pytest.skip(
        f"needs {holds} in {directory}, a folder beside this clone that is not part of the repository; "
        "these checks run wherever that folder is present, as in the project's own CI (.ci/run)"
    )


@pytest.fixture(scope="session")
def reference() -> Path:
    """Upstream CRDs, chart default values and IAM policies (../shared/reference)."""
    return upstream_copy(REFERENCE, "upstream CRDs, chart defaults and IAM policies")


@pytest.fixture(scope="session")
def charts() -> Path:
    """The complete upstream charts at the pinned versions (../shared/charts), for `helm template`."""
    return upstream_copy(CHARTS, "the upstream Helm charts at their pinned versions")


@pytest.fixture(scope="session")
def dev_plan() -> PlanResult:
    return plan_stack("dev")


@pytest.fixture(scope="session")
def prod_plan() -> PlanResult:
    return plan_stack("prod")


@pytest.fixture(scope="session")
def public_endpoint_plan(plan_with: Callable[..., PlanResult]) -> PlanResult:
    """dev with its endpoint on the internet: the load balancer controller, TLS and client ranges."""
    return plan_with(PUBLIC_ENDPOINT)


@pytest.fixture(scope="session")
def plans(
    dev_plan: PlanResult, prod_plan: PlanResult, public_endpoint_plan: PlanResult
) -> dict[str, PlanResult]:
    """The variants the conformance tests check: the two shipped stacks and dev with a public endpoint."""
    return {"dev": dev_plan, "prod": prod_plan, "public-endpoint": public_endpoint_plan}


@pytest.fixture(scope="session")
def plan_with() -> Callable[..., PlanResult]:
    """Plan the dev stack with some keys overridden (fully qualified, as text or YAML values).

    Session-scoped, so that module-scoped fixtures can plan variants with it too; a config planned once is
    planned once per session, whichever test asks (tests read plans, none changes one)."""
    planned: dict[tuple[str, tuple[tuple[str, str], ...]], PlanResult] = {}

    def plan(overrides: Mapping[str, object], stack: str = "dev") -> PlanResult:
        config, secret_keys = stack_config(stack)
        for key, value in overrides.items():
            config[key] = value if isinstance(value, str) else json.dumps(value)
        key = (stack, tuple(sorted(config.items())))
        if key not in planned:
            planned[key] = run_program(stack, config, secret_keys)
        return planned[key]

    return plan

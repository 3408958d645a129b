"""The offline plan: the real program run under the Pulumi SDK's mocks, with no cloud and no CLI.

The stack's config comes from Pulumi.yaml and Pulumi.<stack>.yaml as the CLI would merge them; secure values
are replaced by a marker and never decrypted. Every resource the program registers is recorded with its
parent and inputs, and the outputs that later resources read come from `selfhost.plan.mocks`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.rpc import _special_secret_sig, _special_sig_key
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from selfhost.plan.mocks import PlanMocks
from selfhost.stack_file import PROJECT_DIR, SECRET, stack_config
from stacks.config import PlatformConfig, config_from_pulumi
from stacks.platform import build_platform

PROJECT = "self-hosted-llm"


@dataclass(frozen=True)
class RecordedResource:
    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    dependencies: tuple[str, ...]
    custom: bool


@dataclass
class PlanResult:
    stack: str
    config: PlatformConfig
    resources: list[RecordedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> RecordedResource:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, also keeping each registration's parent, inputs and dependencies."""

    def __init__(self, mocks: pulumi_mocks.Mocks):
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []

    def RegisterResource(self, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            inputs = pulumi.runtime.rpc.deserialize_properties(request.object, keep_unknowns=True)
            parent = request.parent.rsplit("::", 1)[-1] if request.parent else None
            self.recorded.append(
                RecordedResource(
                    type=request.type,
                    name=request.name,
                    parent=None if parent == f"{PROJECT}-{pulumi.get_stack()}" else parent,
                    inputs=recorded_value(inputs),
                    dependencies=tuple(urn.rsplit("::", 1)[-1] for urn in request.dependencies),
                    custom=bool(request.custom),
                )
            )
        return super().RegisterResource(request)


def recorded_value(value: Any, secret: bool = False) -> Any:
    """A deserialized property tree as the plan shows it: secret values masked, whole numbers as integers.

    A secret map or list keeps its shape and masks each value (a Secret's `stringData` shows which keys it
    holds, so the manifest stays a valid object); keys are names, never values. The engine carries every
    number as a double, so `replicas: 2` arrives as 2.0.
    """
    if isinstance(value, Mapping):
        if value.get(_special_sig_key) == _special_secret_sig:
            return recorded_value(value.get("value"), secret=True)
        return {key: recorded_value(item, secret) for key, item in value.items()}
    if isinstance(value, list):
        return [recorded_value(item, secret) for item in value]
    if secret:
        return SECRET
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def run_program(
    stack: str,
    config: Mapping[str, str],
    secret_keys: list[str] | None = None,
    program: Callable[[PlatformConfig], Mapping[str, Any]] | None = None,
    mocks: PlanMocks | None = None,
) -> PlanResult:
    """Run `program` (default: the platform) under mocks (default: PlanMocks); raise ConfigError before
    registering anything."""

    def preview_platform(platform_config: PlatformConfig) -> Mapping[str, Any]:
        return build_platform(platform_config, deploying=False)

    mocks = mocks or PlanMocks()
    monitor = _RecordingMonitor(mocks)
    # Each plan gets its own event loop: the SDK awaits on the current one, and a caller may have closed it
    # (asyncio.run does).
    asyncio.set_event_loop(asyncio.new_event_loop())
    # The SDK keeps pending RPCs and outputs in module-level settings; a second plan in one process
    # (the tests) must not wait on the first one's.
    settings = cast(Any, SETTINGS)
    settings.rpc_manager.clear()
    settings.outputs.clear()
    pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]
    # The platform logs config warnings through pulumi.log; the plan reports them itself.
    quiet = logging.getLogger("selfhost.plan.engine")
    quiet.propagate = False
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    pulumi_mocks.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, logger=quiet, monitor=monitor)
    pulumi.runtime.set_all_config(dict(config), secret_keys or [])
    holder: dict[str, Any] = {}

    def body() -> None:
        # The plan never decrypts: secret values are placeholders, whose contents are not checked.
        platform_config = config_from_pulumi(secrets_readable=False)
        holder["config"] = platform_config
        # The plan shows what a preview would: a config problem that only `pulumi up` enforces stays a warning.
        holder["outputs"] = (program or preview_platform)(platform_config)

    _sync_await(run_pulumi_func(body))
    result = PlanResult(stack=stack, config=holder["config"], resources=monitor.recorded)
    result.outputs = {key: _resolve(value) for key, value in holder["outputs"].items()}
    return result


def _resolve(value: Any) -> Any:
    """The plain value of an output for the report, with secrets masked."""
    if isinstance(value, pulumi.Output):
        is_secret = _sync_await(value.is_secret())
        return SECRET if is_secret else _sync_await(value.future())
    return value


def plan_stack(stack: str, project_dir: Path = PROJECT_DIR) -> PlanResult:
    config, secret_keys = stack_config(stack, project_dir)
    return run_program(stack, config, secret_keys)

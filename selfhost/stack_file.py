"""A stack's config as its files give it, without Pulumi: Pulumi.yaml's declared values under Pulumi.STACK.yaml.

Kept apart from the plan's runner, which loads the Pulumi SDKs and every component, so that commands that only
read config (`selfhost simulate`, the offline checks of `preview` and `up`) start without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from selfhost.prerequisites import missing_stack_file

PROJECT_DIR = Path(__file__).resolve().parents[1]
# What a secret's value is shown as wherever the plan or a command prints config or outputs.
SECRET = "[secret]"


def _as_config_text(value: Any) -> str:
    """Stack files hold YAML values; Pulumi hands programs strings (JSON for lists and maps)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def stack_config(stack: str, project_dir: Path = PROJECT_DIR) -> tuple[dict[str, str], list[str]]:
    """Merge Pulumi.yaml values and Pulumi.<stack>.yaml; secure values become the marker."""
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text()) or {}
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.exists():
        raise FileNotFoundError(missing_stack_file(stack_file))
    stack_values = (yaml.safe_load(stack_file.read_text()) or {}).get("config") or {}
    merged: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, declaration in (project.get("config") or {}).items():
        if isinstance(declaration, dict) and "value" in declaration:
            merged[key] = _as_config_text(declaration["value"])
    for key, value in stack_values.items():
        if isinstance(value, dict) and "secure" in value:
            merged[key] = SECRET
            secret_keys.append(key)
        else:
            merged[key] = _as_config_text(value)
    return merged, secret_keys

"""Pulumi.yaml and the stack files are what the Pulumi CLI will load: check them by its rules."""

import json
from pathlib import Path

import yaml

from stacks.config import KEYS, KEYS_BY_NAME

ROOT = Path(__file__).resolve().parent.parent
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def test_project_runs_python_with_uv():
    assert PROJECT["name"] == "self-hosted-llm"
    assert PROJECT["runtime"] == {"name": "python", "options": {"toolchain": "uv"}}


def test_declared_keys_follow_pulumi_rules_for_other_namespaces():
    # Pulumi rejects a project file whose keys outside the project's namespace declare `type` or `default`
    # ("is not namespaced by the project and should not define a type") and requires a `value` for them.
    for key, declaration in PROJECT["config"].items():
        namespace = key.split(":", 1)[0]
        assert namespace != PROJECT["name"]
        assert set(declaration) <= {"value", "description"}, key
        assert "value" in declaration, key


def test_every_key_with_a_default_is_declared_with_it():
    declared = PROJECT["config"]
    with_defaults = {key.name for key in KEYS if key.default is not None and not key.secret}
    assert set(declared) == with_defaults
    for name, declaration in declared.items():
        key = KEYS_BY_NAME[name]
        assert declaration["value"] == key.default, name
        assert declaration["description"] == f"({key.kind}) {key.description}"


def test_readme_documents_every_key():
    readme = (ROOT / "README.md").read_text()
    for key in KEYS:
        assert f"`{key.name}`" in readme, key.name


def test_stack_files_only_use_known_keys():
    for stack in ("dev", "prod"):
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        for key, value in config.items():
            assert key in KEYS_BY_NAME, key
            assert not isinstance(value, dict) or "secure" in value, json.dumps(value)

"""Pulumi.yaml and the stack files are what the Pulumi CLI will load: check them by its rules, and check that
the declarations and the configuration reference are the ones the schema generates."""

from pathlib import Path

import yaml

from stacks.config import OWNED_NAMESPACES, config_keys
from stacks.config.docs import REFERENCE_FILE, project_file, reference_with_table

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
    keys = {key.name: key for key in config_keys()}
    assert set(declared) == {name for name, key in keys.items() if key.has_default and not key.secret}
    for name, declaration in declared.items():
        assert declaration["value"] == keys[name].default, name
        assert declaration["description"] == f"({keys[name].kind}) {keys[name].description}"


def test_project_file_and_reference_are_generated_from_the_schema():
    # Regenerate both with `uv run python -m stacks.config.docs` after changing a model.
    assert (ROOT / "Pulumi.yaml").read_text() == project_file()
    reference = REFERENCE_FILE.read_text()
    assert reference == reference_with_table(reference)
    for key in config_keys():
        assert f"| `{key.name}` |" in reference, key.name


def test_readme_links_the_configuration_reference():
    assert "(docs/configuration.md)" in (ROOT / "README.md").read_text()


def test_stack_files_only_use_known_keys_and_encrypt_secrets():
    keys = {key.name: key for key in config_keys()}
    for stack in ("dev", "prod"):
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        for name, value in config.items():
            assert name in keys or name.split(":", 1)[0] not in OWNED_NAMESPACES, name
            assert name not in keys or not keys[name].secret or "secure" in value, name

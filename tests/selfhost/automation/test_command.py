"""The Automation API commands end with one clear sentence when the CLI, the backend or AWS is missing.

A stand-in `pulumi` script on PATH answers `pulumi version` like the real CLI and then fails the way the real
one does (the engine and provider messages quoted in selfhost/automation/command.py), so the whole path
through `pulumi.automation` runs here with no cloud and no Pulumi CLI.
"""

import json
import stat
from pathlib import Path

import pytest

from selfhost.automation import command as automation_command
from selfhost.automation.command import Console, wait_for_model
from selfhost.cli import main

COMMANDS = ("preview", "up", "destroy", "refresh", "outputs")
ENGINE_COMMANDS = ("preview", "up", "destroy", "refresh")

# The stand-in reports 3.205, the last CLI version whose engine events the Automation API reads from a file
# (--event-log PATH; newer ones stream them over gRPC): the stand-in writes that file as the engine would.
FAKE_PULUMI = r"""#!/bin/sh
if [ "$1" = "version" ]; then echo "v3.205.0"; exit 0; fi
echo "$*" >> "$FAKE_PULUMI_LOG"
case "$FAKE_PULUMI_SCENARIO" in
  no-login)
    echo "error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions" >&2
    exit 255 ;;
  no-stack)
    echo "error: no stack named 'dev' found" >&2
    exit 255 ;;
esac
case "$*" in
  *"stack select"*|*"stack init"*) exit 0 ;;
  *"stack output"*) echo "{}"; exit 0 ;;
  *"stack history"*)
    echo '[{"kind": "update", "startTime": "2026-12-01T00:00:00.000Z", "message": "", "environment": {}, "config": {}, "result": "succeeded", "endTime": "2026-12-01T00:01:00.000Z", "resourceChanges": {"same": 1}}]'
    exit 0 ;;
esac
events=""
for argument in "$@"; do
  if [ "$previous" = "--event-log" ]; then events=$argument; fi
  previous=$argument
done
case "$FAKE_PULUMI_SCENARIO" in
  no-aws-credentials)
    echo "Diagnostics:"
    echo "  pulumi:providers:aws (default_7_12_0):"
    echo "    error: pulumi:providers:aws resource 'default_7_12_0' has a problem: No valid credential sources found."
    echo "error: preview failed" >&2
    exit 255 ;;
  locked)
    echo "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file with \`pulumi cancel\`." >&2
    exit 255 ;;
  engine-error)
    echo "error: an unexpected thing happened in the engine." >&2
    exit 255 ;;
  expired-mid-update)
    # One resource was created before the provider's session token expired.
    printf '%s\n' '{"sequence": 1, "timestamp": 1, "resOutputsEvent": {"metadata": {"op": "create", "urn": "urn:pulumi:dev::self-hosted-llm::aws:ec2/vpc:Vpc::llm-dev", "type": "aws:ec2/vpc:Vpc", "provider": ""}}}' >> "$events"
    printf '%s\n' '{"sequence": 2, "timestamp": 2, "cancelEvent": {}}' >> "$events"
    echo "    error: creating EC2 Subnet: operation error EC2: CreateSubnet, api error ExpiredToken: The security token included in the request is expired"
    echo "error: update failed" >&2
    exit 255 ;;
  policy-violation)
    # The engine writes its events, a policy violation among them, to the file --event-log names.
    printf '%s\n' '{"sequence": 1, "timestamp": 1, "policyEvent": {"message": "EKS cluster has no encryptionConfig", "color": "never", "policyName": "eks-secrets-encrypted", "policyPackName": "self-hosted-llm-guardrails", "policyPackVersion": "0.1.0", "policyPackVersionTag": "0.1.0", "enforcementLevel": "mandatory", "resourceUrn": "urn:pulumi:dev::self-hosted-llm::eks:index:Cluster$aws:eks/cluster:Cluster::llm-dev-eksCluster"}}' >> "$events"
    printf '%s\n' '{"sequence": 3, "timestamp": 3, "cancelEvent": {}}' >> "$events"
    echo "error: preview failed" >&2
    exit 255 ;;
esac
# A successful operation ends its event log with the summary event the Automation API waits for.
if [ -n "$events" ]; then
  printf '%s\n' '{"sequence": 2, "timestamp": 2, "summaryEvent": {"maybeCorrupt": false, "durationSeconds": 1, "resourceChanges": {"same": 1}, "PolicyPacks": {}}}' >> "$events"
fi
# The engine's last event, after which the Automation API stops reading the log.
if [ -n "$events" ]; then printf '%s\n' '{"sequence": 3, "timestamp": 3, "cancelEvent": {}}' >> "$events"; fi
exit 0
"""


def _command_line(command: str) -> list[str]:
    return [command, "dev", "--yes"] if command == "destroy" else [command, "dev"]


@pytest.fixture
def fake_pulumi(tmp_path, monkeypatch):
    """Put the stand-in `pulumi` first on PATH; returns a function that picks its failure."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(FAKE_PULUMI)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "pulumi-calls.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)

    def scenario(name: str) -> Path:
        monkeypatch.setenv("FAKE_PULUMI_SCENARIO", name)
        return log

    return scenario


@pytest.mark.parametrize("command", COMMANDS)
def test_without_the_pulumi_cli_every_command_says_to_install_it(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(_command_line(command)) == 2
    captured = capsys.readouterr()
    does = {"up": "deploy a stack", "outputs": "read a stack's outputs"}.get(command, f"{command} a stack")
    assert captured.err.startswith(
        f"selfhost {command} dev: the Pulumi CLI is not on PATH and is needed to {does}: install it"
    )
    assert "Traceback" not in captured.err + captured.out
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize("command", ENGINE_COMMANDS)
def test_without_aws_credentials_engine_commands_say_how_to_sign_in(command, fake_pulumi, tmp_path, capsys):
    log = fake_pulumi("no-aws-credentials")
    argv = _command_line(command) + (["--summary", str(tmp_path / "s.md")] if command == "preview" else [])
    # Found before the engine changed anything: a missing prerequisite, exit 2.
    assert main(argv) == 2
    captured = capsys.readouterr()
    last_line = captured.err.strip().splitlines()[-1]
    assert last_line.startswith(f"selfhost {command} dev: No AWS credentials were found: sign in")
    assert "aws sts get-caller-identity" in last_line
    assert "Traceback" not in captured.err + captured.out
    # The engine ran the real operation on the selected stack before it failed.
    calls = log.read_text()
    assert "stack select --stack dev" in calls
    assert f"--non-interactive {command}" in calls


@pytest.mark.parametrize("command", COMMANDS)
def test_without_a_backend_login_every_command_says_how_to_log_in(command, fake_pulumi, tmp_path, capsys):
    fake_pulumi("no-login")
    argv = _command_line(command) + (["--summary", str(tmp_path / "s.md")] if command == "preview" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not logged in to a state backend: run `pulumi login --local`" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["up", "destroy"])
def test_credentials_expiring_after_a_change_are_a_failure_of_what_ran(command, fake_pulumi, capsys):
    fake_pulumi("expired-mid-update")
    # Something was created (or deleted) before the token expired: exit 1, not "missing before anything ran".
    assert main(_command_line(command) + (["--skip-smoke"] if command == "up" else [])) == 1
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith(f"selfhost {command} dev: The AWS credentials are expired or invalid")


def test_a_locked_stack_says_to_wait_or_cancel(fake_pulumi, capsys):
    fake_pulumi("locked")
    assert main(["up", "dev"]) == 2
    err = capsys.readouterr().err
    assert "Stack dev is locked by another update" in err
    assert "pulumi cancel --stack dev" in err


def test_a_stack_missing_from_the_backend_says_how_to_create_it(fake_pulumi, capsys):
    fake_pulumi("no-stack")
    assert main(["outputs", "dev"]) == 2
    assert "does not exist in the backend" in capsys.readouterr().err


@pytest.mark.parametrize("scenario", ["no-login", "no-stack"])
def test_the_clients_and_the_automation_commands_say_a_missing_prerequisite_alike(
    scenario, fake_pulumi, capsys
):
    fake_pulumi(scenario)
    said = {}
    for command in ("outputs", "smoke", "chat", "bench"):
        assert main([command, "dev"]) == 2, command
        [line] = capsys.readouterr().err.strip().splitlines()
        prefix = f"selfhost {command} dev: "
        assert line.startswith(prefix)
        said[command] = line.removeprefix(prefix)
    assert len(set(said.values())) == 1, said


def test_an_unknown_engine_failure_quotes_the_engine(fake_pulumi, capsys):
    fake_pulumi("engine-error")
    assert main(["refresh", "dev"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        "selfhost refresh dev: pulumi refresh failed (the engine said: an unexpected thing happened in the "
        "engine): read the diagnostics above, fix their cause and run it again."
    )


def test_a_failed_preview_still_writes_a_summary(fake_pulumi, tmp_path, monkeypatch, capsys):
    fake_pulumi("no-aws-credentials")
    step_summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    assert main(["preview", "dev", "--summary", str(tmp_path / "preview.md")]) == 2
    written = (tmp_path / "preview.md").read_text()
    assert written.startswith("### Pulumi preview of stack `dev`")
    assert "**Failed.** No AWS credentials were found" in written
    assert step_summary.read_text() == written + "\n"


def test_preview_and_up_need_the_stack_file(fake_pulumi, capsys):
    fake_pulumi("no-aws-credentials")
    assert main(["preview", "nosuchstack"]) == 2
    assert "there is no Pulumi.nosuchstack.yaml" in capsys.readouterr().err


def test_destroy_without_yes_and_without_a_terminal_refuses(fake_pulumi, monkeypatch, capsys):
    log = fake_pulumi("no-aws-credentials")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["destroy", "dev"]) == 2
    assert "pass --yes to confirm" in capsys.readouterr().err
    assert not log.exists()


def test_secrets_provider_comes_from_the_stack_file(tmp_path):
    stack_file = tmp_path / "Pulumi.team.yaml"
    assert automation_command.secrets_provider(stack_file) is None
    stack_file.write_text("secretsprovider: awskms://alias/pulumi?region=us-west-2\nconfig: {}\n")
    assert automation_command.secrets_provider(stack_file) == "awskms://alias/pulumi?region=us-west-2"


def test_up_retries_the_smoke_check_until_the_model_serves(monkeypatch, capsys):
    answers = iter([1, 1, 0])
    calls: list[str] = []

    def smoke(stack: str) -> int:
        calls.append(stack)
        return next(answers)

    monkeypatch.setattr(automation_command, "smoke", smoke)
    monkeypatch.setattr(automation_command, "SMOKE_RETRY_SECONDS", 0)
    assert wait_for_model("dev", 60, Console(json_mode=False)) == 0
    assert calls == ["dev"] * 3
    assert "attempt 3" in capsys.readouterr().out


def test_up_gives_up_when_the_model_never_serves(monkeypatch, capsys):
    monkeypatch.setattr(automation_command, "smoke", lambda stack: 1)
    monkeypatch.setattr(automation_command, "SMOKE_RETRY_SECONDS", 0)
    assert wait_for_model("dev", 0, Console(json_mode=False)) == 1
    assert "did not pass the smoke check within 0 s" in capsys.readouterr().err


def test_json_mode_prints_engine_events_as_json_lines(capsys):
    from pulumi.automation import EngineEvent

    console = Console(json_mode=True)
    event = {
        "sequence": 3,
        "timestamp": 7,
        "summaryEvent": {
            "maybeCorrupt": False,
            "durationSeconds": 1,
            "resourceChanges": {"same": 2},
            "PolicyPacks": {},
        },
    }
    console.event(EngineEvent.from_json(event))
    console.output("progress text")
    captured = capsys.readouterr()
    assert [json.loads(line) for line in captured.out.splitlines()] == [event]
    assert captured.err == "progress text\n"


def test_engine_events_are_collected_for_a_preview_summary_and_for_json_output():
    plain, machine = Console(json_mode=False), Console(json_mode=True)
    assert plain.engine_options(diff=False)["on_event"] is None
    assert plain.engine_options(diff=False, events=True)["on_event"] == plain.event
    assert machine.engine_options(diff=True)["on_event"] == machine.event
    assert machine.engine_options(diff=True)["diff"] is True


@pytest.mark.parametrize("command", ["preview", "up"])
def test_a_missing_stack_file_is_found_before_the_missing_cli(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main([command, "nosuchstack"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"selfhost {command} nosuchstack: there is no Pulumi.nosuchstack.yaml")
    assert "Pulumi CLI" not in err


@pytest.mark.parametrize("command", ["preview", "up"])
def test_a_bad_config_is_found_before_the_missing_cli(command, tmp_path, monkeypatch, capsys):
    # Checked offline, as `selfhost plan` would: no CLI, no backend, no credentials needed to learn of a typo.
    (tmp_path / "Pulumi.yaml").write_text((automation_command.PROJECT_DIR / "Pulumi.yaml").read_text())
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  llm:instanceTyp: g6.12xlarge\n")
    monkeypatch.setattr(automation_command, "PROJECT_DIR", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main([command, "dev"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"selfhost {command} dev: the stack's config has 1 error(s):\n")
    assert "llm:instanceTyp: unknown key (did you mean llm:instanceType?)" in err
    assert "Pulumi CLI" not in err


@pytest.mark.parametrize("command", ["preview", "up"])
def test_preview_and_up_enforce_the_project_policy_pack(command, fake_pulumi, tmp_path):
    log = fake_pulumi("ok")
    argv = (
        [command, "dev", "--skip-smoke"]
        if command == "up"
        else [command, "dev", "--summary", str(tmp_path / "s.md")]
    )
    assert main(argv) == 0
    [operation] = [line for line in log.read_text().splitlines() if f"--non-interactive {command} " in line]
    assert f"--policy-pack {automation_command.PROJECT_DIR / 'policy'}" in operation


@pytest.mark.parametrize("command", ["preview", "up"])
def test_a_mandatory_violation_names_its_rule_and_resource(command, fake_pulumi, tmp_path, capsys):
    fake_pulumi("policy-violation")
    summary = tmp_path / "s.md"
    argv = (
        [command, "dev", "--skip-smoke"] if command == "up" else [command, "dev", "--summary", str(summary)]
    )
    assert main(argv) == 1
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line == (
        f"selfhost {command} dev: the policy pack stopped the {command}: policy eks-secrets-encrypted (mandatory) "
        "on llm-dev-eksCluster: EKS cluster has no encryptionConfig"
    )
    if command == "preview":
        assert "- policy eks-secrets-encrypted (mandatory) on llm-dev-eksCluster" in summary.read_text()


def test_a_ci_preview_of_a_stack_not_deployed_yet_says_so_and_creates_nothing(fake_pulumi, tmp_path):
    log = fake_pulumi("no-stack")
    summary = tmp_path / "s.md"
    assert main(["preview", "dev", "--existing-only", "--summary", str(summary)]) == 0
    assert "is not deployed yet" in summary.read_text()
    assert not any("stack init" in line for line in log.read_text().splitlines())


def test_every_command_that_reads_a_stack_file_says_a_missing_one_alike(monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")
    said = {}
    for command in ("plan", "simulate", "preview", "up"):
        assert main([command, "nosuchstack"]) == 2, command
        [line] = capsys.readouterr().err.strip().splitlines()
        said[command] = line.removeprefix(f"selfhost {command} nosuchstack: ")
    assert set(said.values()) == {
        f"there is no Pulumi.nosuchstack.yaml in {automation_command.PROJECT_DIR}: copy Pulumi.dev.yaml to it "
        "(or pick dev or prod) and run the command again."
    }

"""`selfhost smoke` against the fake server, directly and through the stack's outputs and a port-forward."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from selfhost.cli import main
from tests.chat.fake_server_process import API_KEY, FakeServer

FAKE_KUBECTL = Path(__file__).with_name("fake_kubectl.py")


def smoke(*arguments: str) -> int:
    return main(["smoke", *arguments])


def test_smoke_passes_and_prints_each_latency(
    start_fake_server: Callable[..., FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_fake_server(ttft=0.2, token_delay=0.01, answer_tokens=4)

    assert smoke("--base-url", f"{server.base_url}/v1", "--api-key", API_KEY) == 0

    out = capsys.readouterr().out
    assert re.search(r"PASS\s+health\s+\d+ ms\s+200 OK", out), out
    assert re.search(r"PASS\s+models\s+\d+ ms\s+fake-model", out), out
    chat = re.search(r"PASS\s+chat completion\s+(\d+) ms\s+TTFT (\d+) ms, 4 tokens", out)
    assert chat, out
    # The fake server waits 0.2 s before the first token and 3 x 0.01 s for the other three.
    assert 200 <= int(chat.group(2)) <= 200 + 150
    assert 230 <= int(chat.group(1)) <= 230 + 200
    assert "All 3 checks passed." in out


def test_smoke_fails_on_a_wrong_key(fake_server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke("--base-url", fake_server.base_url, "--api-key", "wrong") == 1

    out = capsys.readouterr().out
    # vLLM keeps /health public, so only the API calls see the key.
    assert re.search(r"PASS\s+health", out), out
    assert re.search(r"FAIL\s+models.*refused the API key \(401 Unauthorized\)", out), out
    # The chat check has no model to ask; it says so instead of blaming an empty model list.
    assert re.search(r"SKIP\s+chat completion\s+no model to ask: see the models check", out), out
    assert "listed none" not in out
    assert "1 of 3 checks passed." in out


def test_a_wrong_key_with_a_model_named_fails_the_chat_check_with_the_401(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert smoke("--base-url", fake_server.base_url, "--api-key", "wrong", "--model", "any") == 1
    out = capsys.readouterr().out
    assert re.search(r"FAIL\s+chat completion.*refused the API key \(401 Unauthorized\)", out), out


def test_smoke_fails_while_the_model_loads(
    start_fake_server: Callable[..., FakeServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_fake_server(loading=True)

    assert smoke("--base-url", server.base_url, "--api-key", API_KEY) == 1

    out = capsys.readouterr().out
    assert re.search(r"FAIL\s+health.*still loading the model", out), out


def test_smoke_fails_when_the_endpoint_is_down(
    fake_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_server.stop()

    assert smoke("--base-url", fake_server.base_url, "--api-key", API_KEY) == 1

    out = capsys.readouterr().out
    assert re.search(rf"FAIL\s+health.*Nothing answers at {fake_server.base_url}", out), out
    assert re.search(r"SKIP\s+models\s+the endpoint is unreachable", out), out
    assert "Traceback" not in out


def _install_fake_clis(bin_dir: Path, pulumi_script: str | None) -> None:
    bin_dir.mkdir()
    shims = {"kubectl": f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_KUBECTL}" "$@"\n'}
    if pulumi_script is not None:
        shims["pulumi"] = f"#!{sys.executable}\n{pulumi_script}"
    for name, text in shims.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


STACK_OUTPUTS = {
    # In-cluster (no TLS load balancer): reached through a port-forward to endpoint_service.
    "endpoint_url": "http://vllm.llm.svc.cluster.local:8000/v1",
    "endpoint_service": "llm/vllm",
    "endpoint_port": 8000,
    "api_key": API_KEY,
    "kubeconfig": {"apiVersion": "v1", "kind": "Config", "clusters": []},
}


def test_smoke_reads_the_stack_outputs_and_port_forwards(
    fake_server: FakeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = tmp_path / "kubectl.json"
    pulumi = (
        "import json, sys\n"
        "assert sys.argv[1:] == ['stack', 'output', '--json', '--show-secrets', '--stack', 'dev'], sys.argv\n"
        f"print(json.dumps({STACK_OUTPUTS!r}))\n"
    )
    _install_fake_clis(tmp_path / "bin", pulumi)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("FAKE_KUBECTL_SERVICE", "llm/vllm")
    monkeypatch.setenv("FAKE_KUBECTL_TARGET", f"127.0.0.1:{fake_server.port}")
    monkeypatch.setenv("FAKE_KUBECTL_RECORD", str(record))

    assert smoke("dev") == 0

    out = capsys.readouterr().out
    assert "stack dev: svc/vllm in namespace llm through kubectl port-forward" in out
    assert "All 3 checks passed." in out
    kubectl = json.loads(record.read_text())
    assert kubectl["argv"][:3] == ["port-forward", "--address", "127.0.0.1"]
    assert kubectl["argv"][-4:-1] == ["-n", "llm", "svc/vllm"]
    assert kubectl["argv"][-1].endswith(":8000")
    assert json.loads(kubectl["kubeconfig"]) == STACK_OUTPUTS["kubeconfig"]
    with pytest.raises(ProcessLookupError):
        os.kill(kubectl["pid"], 0)


def test_smoke_says_when_the_port_forward_fails(
    fake_server: FakeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _install_fake_clis(tmp_path / "bin", f"print({json.dumps(json.dumps(STACK_OUTPUTS))})\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("FAKE_KUBECTL_SERVICE", "other/service")
    monkeypatch.setenv("FAKE_KUBECTL_TARGET", f"127.0.0.1:{fake_server.port}")
    monkeypatch.setenv("FAKE_KUBECTL_RECORD", str(tmp_path / "kubectl.json"))

    assert smoke() == 1

    assert capsys.readouterr().err.strip() == (
        "selfhost smoke dev: kubectl port-forward to svc/vllm in namespace llm failed: "
        'Error from server (NotFound): services "vllm" not found'
    )


@pytest.mark.parametrize(
    ("pulumi_says", "code", "sentence"),
    [
        # The stack is missing from the backend: a prerequisite, said as the Automation commands say it.
        (
            "error: no stack named 'dev' found",
            2,
            "Stack dev does not exist in the backend the Pulumi CLI is logged in to (`pulumi whoami -v` shows "
            "which): create it with `selfhost up dev`, or log in to the backend that holds it.",
        ),
        # Any other failure is quoted.
        (
            "error: failed to decrypt the state: disk I/O error",
            1,
            "Pulumi could not read the outputs of stack 'dev': error: failed to decrypt the state: disk I/O error",
        ),
    ],
)
def test_smoke_says_why_pulumi_could_not_read_the_stack(
    pulumi_says: str,
    code: int,
    sentence: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _install_fake_clis(
        tmp_path / "bin", f"import sys\nprint({pulumi_says!r}, file=sys.stderr)\nsys.exit(255)\n"
    )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))

    assert smoke("dev") == code

    assert capsys.readouterr().err.strip() == f"selfhost smoke dev: {sentence}"


@pytest.mark.parametrize("command", ["chat", "smoke", "bench"])
def test_every_command_says_when_pulumi_is_missing(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _install_fake_clis(tmp_path / "bin", pulumi_script=None)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))

    # Found before anything ran: the same sentence and exit code as the Automation API commands.
    assert main([command]) == 2

    assert capsys.readouterr().err.strip() == (
        f"selfhost {command} dev: the Pulumi CLI is not on PATH and is needed to read the stack's outputs: "
        "install it (curl -fsSL https://get.pulumi.com | sh, or brew install pulumi) and run the command again, "
        "or pass --base-url and --api-key."
    )

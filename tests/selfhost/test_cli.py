"""The command line loads only what the chosen command needs, and has no import circle."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from selfhost import clients
from selfhost.cli import COMMANDS, build_parser, main
from tests.chat.fake_server_process import free_port

PROJECT_DIR = Path(__file__).resolve().parents[2]
# What `selfhost plan` must not load: the chat page, the HTTP clients and the Automation API commands.
NOT_FOR_A_PLAN = ("gradio", "httpx", "chat", "selfhost.clients", "selfhost.automation.command")


def modules_loaded_by(code: str, watched: tuple[str, ...] = NOT_FOR_A_PLAN) -> list[str]:
    """The watched modules (and their submodules) a fresh interpreter has loaded after running `code`."""
    script = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m in {watched!r} or m.startswith({tuple(w + '.' for w in watched)!r}))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_DIR, check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout.splitlines()[-1])


def test_plan_loads_neither_the_chat_client_nor_the_automation_commands():
    # The plan command's module, the whole program it runs (every component) and the runner under mocks.
    loaded = modules_loaded_by(
        "from selfhost.cli import build_parser\n"
        "build_parser('plan')\n"
        "import selfhost.plan.runner, stacks.platform"
    )
    assert loaded == []


def test_commands_that_only_read_config_load_no_component():
    # simulate, and the offline checks of preview and up, read the stack's files, not the program.
    watched = ("selfhost.plan.runner", "stacks.platform", "components")
    assert modules_loaded_by("import selfhost.simulate, selfhost.automation.command", watched) == []


def test_top_level_help_loads_no_command():
    assert modules_loaded_by("from selfhost.cli import build_parser\nbuild_parser(None)") == []


def test_each_command_module_is_loaded_on_its_own():
    # Importing the automation commands does not go back through the CLI (no import circle).
    loaded = modules_loaded_by(
        "import selfhost.automation.command", ("gradio", "selfhost.cli", "selfhost.automation")
    )
    assert loaded == ["selfhost.automation", "selfhost.automation.command", "selfhost.automation.summary"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_parses_its_arguments(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser(command).parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: selfhost " + command in capsys.readouterr().out


def test_chat_without_its_extra_says_how_to_install_it(monkeypatch, capsys):
    # A deployment environment (uv sync --no-dev) has no Gradio; `chat.app` cannot be imported there.
    monkeypatch.setitem(sys.modules, "gradio", None)
    monkeypatch.delitem(sys.modules, "chat.app", raising=False)
    assert main(["chat", "--base-url", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err.strip() == f"selfhost chat: {clients.CHAT_EXTRA_MISSING}"


def test_chat_says_a_taken_port_is_taken_before_printing_a_url(capsys):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["chat", "--base-url", "http://127.0.0.1:9", "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert (
        captured.err.strip()
        == f"selfhost chat: 127.0.0.1:{port} is taken (or needs privileges): pass a free --port."
    )
    assert "http://" not in captured.out


def test_chat_prints_its_url_only_once_the_page_answers_there(monkeypatch):
    gradio = pytest.importorskip("gradio", reason="the chat page is an optional extra (uv sync --extra chat)")
    port = free_port()
    answered_when_printed: list[bool] = []

    class Terminal(io.StringIO):
        def write(self, text: str) -> int:
            if "Chat page: http://127.0.0.1:" in text:
                with socket.socket() as client:
                    answered_when_printed.append(client.connect_ex(("127.0.0.1", port)) == 0)
            return super().write(text)

    # The page would serve until Ctrl-C; here it closes as soon as it would start blocking.
    monkeypatch.setattr(gradio.Blocks, "block_thread", gradio.Blocks.close)
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert main(["chat", "--base-url", "http://127.0.0.1:9", "--port", str(port)]) == 0
    assert answered_when_printed == [True]


def test_help_says_what_chat_and_outputs_do(capsys):
    for command in ("chat", "outputs"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    out = capsys.readouterr().out
    assert "print its URL" in out and "browser" not in out
    assert "print the outputs as one JSON object" in out

"""The README and docs/ as a reader meets them: every relative link and anchor resolves, the first screen has the
set-up commands, the deploy path has the heading the CLI links to, and the documented local server starts."""

from __future__ import annotations

import itertools
import json
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOC_FILES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# Project files that point readers at the README or docs/ (the CLI prints `README.md#deploy-to-aws`).
SOURCE_FILES = [
    *sorted((ROOT / "selfhost").rglob("*.py")),
    *sorted((ROOT / "stacks").rglob("*.py")),
    *sorted((ROOT / "policy").glob("*.py")),
    *sorted(ROOT.glob("Pulumi*.yaml")),
]
SERVER_COMMAND = "uv run python tests/chat/fake_openai_server.py"
READY_TIMEOUT_SECONDS = 10

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); the target ends at whitespace (a title may follow) or the parenthesis.
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
SOURCE_REFERENCE = re.compile(r"(?<![\w/.-])((?:README\.md|docs/[\w-]+\.md)(?:#[\w-]+)?)")


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text without Markdown, lowercased, punctuation other than `-` and `_`
    removed, spaces turned into `-`."""
    text = INLINE_CODE.sub(lambda match: match.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, target) of every Markdown link and image outside code."""
    for number, line in prose_lines(path.read_text()):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            yield number, match.group(1)


def broken(source: Path, target: str) -> str | None:
    """Why a relative link from `source` does not resolve, or None when it does."""
    file_part, _, anchor = target.partition("#")
    destination = (source.parent / file_part).resolve() if file_part else source
    if not destination.exists():
        return f"{file_part} does not exist"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"no heading with anchor #{anchor} in {destination.name}"
    return None


def test_the_anchor_rules_are_githubs():
    assert slug("Deploy to AWS") == "deploy-to-aws"
    assert slug("6. First chat completion") == "6-first-chat-completion"
    assert slug("How long the first start takes, and why") == "how-long-the-first-start-takes-and-why"
    assert slug("The `selfhost` commands") == "the-selfhost-commands"
    assert slug("`selfhost bench`") == "selfhost-bench"
    assert slug("Karpenter and the node pools") == "karpenter-and-the-node-pools"


def test_the_link_checker_finds_a_broken_link_and_a_broken_anchor(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## A section\n\n[ok](#a-section) [missing](other.md) [bad anchor](#nowhere)\n"
        "`[in code](nowhere.md)`\n\n```\n[in a block](nowhere.md)\n```\n"
    )
    found = {target: broken(page, target) for _, target in links(page)}
    assert set(found) == {"#a-section", "other.md", "#nowhere"}
    assert found["#a-section"] is None
    assert found["other.md"] == "other.md does not exist"
    assert found["#nowhere"] is not None


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path):
    problems = []
    for number, target in links(path):
        if SCHEME.match(target):
            continue
        problem = broken(path, target)
        if problem:
            problems.append(f"{path.relative_to(ROOT)}:{number}: ({target}): {problem}")
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for _, target in links(README)
        if not SCHEME.match(target) and not target.startswith("#")
    }
    pages = {path.resolve() for path in DOC_FILES if path != README}
    assert pages - linked == set(), f"docs pages the README does not link: {sorted(pages - linked)}"


def test_references_in_the_code_point_at_existing_pages_and_sections():
    problems = []
    references = 0
    for path in SOURCE_FILES:
        for match in SOURCE_REFERENCE.finditer(path.read_text()):
            references += 1
            problem = broken(README, match.group(1))  # project-relative, as the README's own links are
            if problem:
                problems.append(f"{path.relative_to(ROOT)}: {match.group(1)}: {problem}")
    assert not problems, "\n".join(problems)
    assert references > 0


def test_the_first_screen_has_the_set_up_commands_in_a_bash_block():
    head = README.read_text().splitlines()[:25]
    blocks, block = [], None
    for line in head:
        if block is None and line.strip() == "```bash":
            block = []
        elif block is not None and line.strip() == "```":
            blocks.append(block)
            block = None
        elif block is not None:
            block.append(line)
    commands = [line.split("#", 1)[0].strip() for block in blocks for line in block]
    assert "uv run selfhost plan dev" in commands
    assert "uv run pytest" in commands


def test_the_readme_has_the_deploy_section_the_cli_links_to():
    text = README.read_text()
    assert "## Deploy to AWS" in [line for _, line in prose_lines(text)]
    assert "deploy-to-aws" in anchors(README)


def documented_server_commands() -> list[tuple[Path, str]]:
    found = []
    for path in DOC_FILES:
        for line in path.read_text().splitlines():
            if line.strip().startswith(SERVER_COMMAND):
                found.append((path, line.split("#", 1)[0].strip()))
    return found


def test_the_local_server_is_documented_with_matching_client_commands():
    commands = documented_server_commands()
    assert README in {path for path, _ in commands}, f"README.md has no line starting with {SERVER_COMMAND!r}"
    for path, command in commands:
        server = _options(shlex.split(command))
        text = path.read_text()
        clients = [
            line.split("#", 1)[0].strip()
            for line in text.splitlines()
            if re.match(r"\s*uv run selfhost (chat|smoke|bench) --base-url http://127\.0\.0\.1:", line)
        ]
        assert {client.split()[3] for client in clients} == {"chat", "smoke", "bench"}, path
        for client in clients:
            options = _options(shlex.split(client))
            assert options["--base-url"] == f"http://127.0.0.1:{server['--port']}", client
            assert options["--api-key"] == server["--api-key"], client


@pytest.mark.parametrize(
    "documented", sorted({command for _, command in documented_server_commands()}), ids=lambda _: "server"
)
def test_the_documented_local_server_command_starts_the_server(documented: str):
    words = shlex.split(documented)
    assert words[:3] == ["uv", "run", "python"]
    script, arguments = ROOT / words[3], words[4:]
    assert script.is_file(), script
    options = _options(arguments)
    assert "--port" in options
    arguments[arguments.index("--port") + 1] = "0"
    process = subprocess.Popen(
        [sys.executable, str(script), *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        port = _ready_port(process)
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
        assert health.status == 200
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models",
            headers={"Authorization": f"Bearer {options['--api-key']}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert [model["id"] for model in json.load(response)["data"]]
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _options(words: list[str]) -> dict[str, str]:
    return {word: value for word, value in itertools.pairwise(words) if word.startswith("--")}


def _ready_port(process: subprocess.Popen[str]) -> int:
    """The port of the server's `READY <port>` line, read within READY_TIMEOUT_SECONDS."""
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    output = []
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            break
        output.append(line)
        match = re.fullmatch(r"READY (\d+)\s*", line)
        if match:
            port = int(match.group(1))
            assert port > 0
            return port
    pytest.fail(f"no READY line within {READY_TIMEOUT_SECONDS} s; the server printed: {''.join(output)!r}")

"""The README and docs/ as a reader meets them: every relative link and anchor resolves, the first screen has the
set-up commands, the deploy path has the heading the CLI links to, the documented local server starts, and the
figures the docs quote (sample output, cost, quota, GPU limit, drain) are the ones the plan and the code give."""

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
from typing import Any

import pytest

from components.serving.budget import (
    DRAIN_SECONDS,
    PRE_STOP_SLEEP_SECONDS,
    SPOT_NOTICE_SECONDS,
    TEARDOWN_SECONDS,
)
from selfhost.plan.command import summary, write_plan
from selfhost.plan.runner import PlanResult

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
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


def fenced_blocks(lines: list[str], language: str) -> list[list[str]]:
    """The lines of each fenced block of `language` (```text, ```bash)."""
    blocks, block = [], None
    for line in lines:
        if block is None and line.strip() == f"```{language}":
            block = []
        elif block is not None and line.strip() == "```":
            blocks.append(block)
            block = None
        elif block is not None:
            block.append(line)
    return blocks


def test_the_first_screen_has_the_set_up_commands_in_a_bash_block():
    blocks = fenced_blocks(README.read_text().splitlines()[:25], "bash")
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


# The figures the docs quote, against the plans of the shipped stacks (what `selfhost plan dev|prod` writes).

STACKS = ("dev", "prod")
SUMMARY_LINE = re.compile(r"^  (Model|Sizing|Endpoint|Startup|Cost|Warning) +\S")


@pytest.fixture(scope="module")
def reports(
    dev_plan: PlanResult, prod_plan: PlanResult, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """report.json of each shipped stack, as `selfhost plan` writes it."""
    out = tmp_path_factory.mktemp("plans")
    return {"dev": write_plan(dev_plan, out / "dev"), "prod": write_plan(prod_plan, out / "prod")}


def prose(path: Path) -> str:
    """The text outside fenced code blocks, on one line: a sentence reads the same however it is wrapped."""
    return " ".join(" ".join(line for _, line in prose_lines(path.read_text())).split())


def section(path: Path, heading: str) -> list[str]:
    """The lines under a heading, up to the next heading of the same or a higher level."""
    lines = path.read_text().splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    start = lines.index(heading) + 1
    for end in range(start, len(lines)):
        match = HEADING.match(lines[end])
        if match and len(match.group(1)) <= level:
            return lines[start:end]
    return lines[start:]


def table_rows(lines: list[str]) -> dict[str, list[str]]:
    """The rows of the Markdown tables in `lines`, by their first cell (bold marks removed)."""
    rows = {}
    for line in lines:
        if line.startswith("|") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0].replace("**", "")] = [cell.replace("**", "") for cell in cells[1:]]
    return rows


def dollars(usd: float, places: int) -> str:
    return f"${usd:,.{places}f}"


def gpu_quota_vcpus(report: dict[str, Any]) -> int:
    """The vCPUs the stack's GPU instances need of each GPU quota it draws on (one figure for all of them)."""
    figures = {row["vcpus"] for row in report["quota"] if "G and VT" in row["quota"]}
    assert len(figures) == 1, report["quota"]
    return figures.pop()


def test_the_readme_sample_output_is_what_the_plan_prints(reports: dict[str, Any], tmp_path: Path):
    printed = summary(reports["dev"], tmp_path).splitlines()
    samples = [
        block
        for block in fenced_blocks(README.read_text().splitlines(), "text")
        if any(SUMMARY_LINE.match(line) for line in block)
    ]
    assert len(samples) == 1, "README.md should show one sample of the plan's summary"
    shown = [(match.group(1), line) for line in samples[0] if (match := SUMMARY_LINE.match(line))]
    assert {"Model", "Cost"} <= {label for label, _ in shown}, (
        "the sample shows at least the Model and Cost lines"
    )
    assert [line for _, line in shown if line not in printed] == [], "\n".join(
        [
            "README.md's sample output differs from what `selfhost plan dev` prints:",
            *(line for line in printed if SUMMARY_LINE.match(line)),
        ]
    )


@pytest.mark.parametrize("path", [README, DOCS / "configuration.md"], ids=lambda path: path.name)
def test_the_replica_ranges_the_docs_state_are_the_plans(reports: dict[str, Any], path: Path):
    text = prose(path)
    for stack in STACKS:
        scaling = reports[stack]["scaling"]
        stated = re.findall(rf"`{stack}` scales between (\d+) and (\d+) replicas", text)
        assert stated == [(str(scaling["min_replicas"]), str(scaling["max_replicas"]))], (
            f"{path.name}: {stack}"
        )


def test_the_readme_states_each_stacks_idle_and_peak_cost(reports: dict[str, Any]):
    text = prose(README)
    for stack in STACKS:
        scaling, cost = reports[stack]["scaling"], reports[stack]["cost"]
        stated = re.findall(
            rf"`{stack}` costs? (\$[\d.]+)/h at (\d+) replicas[^$]*? up to (\$[\d.]+)/h at (\d+)", text
        )
        assert stated == [
            (
                dollars(cost["idle_usd_per_hour"], 2),
                str(scaling["min_replicas"]),
                dollars(cost["peak_usd_per_hour"], 2),
                str(scaling["max_replicas"]),
            )
        ], stack


@pytest.mark.parametrize("path", [README, DOCS / "troubleshooting.md"], ids=lambda path: path.name)
def test_the_gpu_quota_the_docs_state_is_the_plans(reports: dict[str, Any], path: Path):
    text = prose(path)
    for stack in STACKS:
        stated = {int(figure) for figure in re.findall(rf"(\d+) vCPUs for `{stack}`", text)}
        assert stated == {gpu_quota_vcpus(reports[stack])}, f"{path.name}: the GPU quota of {stack}"
    assert "one spare" in text and "top of the autoscaling range" in text, "the rule behind the figures"
    # The troubleshooting page's example increase request is dev's figure; the README asks for none.
    requested = {int(value) for value in re.findall(r"--desired-value (\d+)", path.read_text())}
    assert requested == ({gpu_quota_vcpus(reports["dev"])} if path != README else set())


def test_the_gpu_limit_in_the_architecture_is_the_plans(reports: dict[str, Any]):
    row = table_rows(section(DOCS / "architecture.md", "### The node pools"))["Limit"]
    stated = re.findall(r"dev: (\d+), prod: (\d+)", row[0])
    assert stated == [tuple(str(reports[stack]["sizing"]["gpu_limit"]) for stack in STACKS)], row[0]


def test_the_cost_table_in_the_architecture_is_the_plans(reports: dict[str, Any]):
    lines = section(DOCS / "architecture.md", "## What it costs per hour")
    rows = table_rows(lines)
    assert rows["Item"][:2] == list(STACKS)
    items = {
        stack: {item["name"]: item["usd_per_hour"] for item in reports[stack]["cost"]["items"]}
        for stack in STACKS
    }
    for name in sorted(set(items["dev"]) | set(items["prod"])):
        assert name in rows, f"the cost table has no row for {name!r}"
        stated = rows[name][:2]
        expected = [dollars(items[stack][name], 4) if name in items[stack] else "" for stack in STACKS]
        assert stated == expected, name
    totals = {
        kind: [cells for label, cells in rows.items() if kind in label.lower()] for kind in ("peak", "idle")
    }
    assert [len(found) for found in totals.values()] == [1, 1], "one total row at the peak, one when idle"
    (peak,), (idle,) = totals["peak"], totals["idle"]
    for index, stack in enumerate(STACKS):
        cost = reports[stack]["cost"]
        assert peak[index] == dollars(cost["peak_usd_per_hour"], 4), stack
        assert idle[index] == dollars(cost["idle_usd_per_hour"], 4), stack
        assert dollars(cost["total_usd_per_month"], 0) in peak[2], stack
    # The network and cluster before any node.
    text = prose(DOCS / "architecture.md")
    base = ("EKS control plane", "NAT gateways", "Karpenter on Fargate", "CoreDNS on Fargate", "KMS key")
    for stack in STACKS:
        figure = dollars(sum(items[stack][name] for name in base), 3)
        assert f"{figure}/h in {stack}" in text, f"the network and cluster alone in {stack}: {figure}/h"


def model_server_drain(plan: PlanResult) -> tuple[int, int]:
    """The vLLM pod's grace period and its --shutdown-timeout, as the plan's Deployment has them."""
    [pod] = [
        deployment.inputs["spec"]["template"]["spec"]
        for deployment in plan.of_type("kubernetes:apps/v1:Deployment")
        if "--shutdown-timeout"
        in deployment.inputs["spec"]["template"]["spec"]["containers"][0].get("args", [])
    ]
    args = pod["containers"][0]["args"]
    return pod["terminationGracePeriodSeconds"], int(args[args.index("--shutdown-timeout") + 1])


def test_the_drain_the_operations_page_promises_is_the_model_servers(dev_plan: PlanResult):
    lines = (DOCS / "operations.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("- **Replicas**"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  "))
    text = " ".join(" ".join(lines[start:end]).split())
    grace, drain = model_server_drain(dev_plan)
    # The grace period the page breaks down is the pod's, its parts adding up to it.
    assert (grace, drain) == (PRE_STOP_SLEEP_SECONDS + DRAIN_SECONDS + TEARDOWN_SECONDS, DRAIN_SECONDS)
    for figure in (
        f"up to {drain} s (`--shutdown-timeout`)",
        f"within a {grace} s grace period",
        f"({PRE_STOP_SLEEP_SECONDS} s while the Service drops the pod, the {DRAIN_SECONDS} s drain, "
        f"{TEARDOWN_SECONDS} s to tear the engine down)",
        f"{SPOT_NOTICE_SECONDS} s after its interruption notice",
    ):
        assert figure in text, figure
    for disruption in ("rollouts", "consolidation", "drift", "scheduled maintenance", "spot reclaim"):
        assert disruption in text, disruption


def test_the_readme_says_which_disruptions_the_drain_covers():
    text = " ".join(README.read_text().split())
    assert (
        f"finishes the answers it is streaming for up to {DRAIN_SECONDS} s on rollouts, consolidation, drift and "
        f"scheduled maintenance events; a spot reclaim (dev) comes {SPOT_NOTICE_SECONDS} s after its notice"
    ) in text

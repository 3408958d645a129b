"""`selfhost preview|up|destroy|refresh|outputs STACK`: a stack driven through the Pulumi Automation API.

The program is this project directory (a `LocalWorkspace` on it), so `Pulumi.yaml` and `Pulumi.STACK.yaml`
give the config and the secrets provider exactly as they do for the `pulumi` CLI; the backend is the one the
CLI is logged in to (`pulumi login`, or `PULUMI_BACKEND_URL`). The engine's progress streams live; `--json`
turns stdout into one engine event per line for machines and sends the human progress to stderr. When the
engine fails, the last thing printed is one sentence on what to do about it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import yaml
from pulumi import automation as auto
from pulumi.automation.errors import (
    CommandError,
    ConcurrentUpdateError,
    InvalidVersionError,
    StackNotFoundError,
)

from selfhost.automation.summary import (
    changed_anything,
    engine_event_json,
    failure_markdown,
    mandatory_violations,
    not_deployed_markdown,
    preview_markdown,
    strip_ansi,
)
from selfhost.clients import smoke
from selfhost.prerequisites import (
    EXIT_FAILED,
    EXIT_PREREQUISITE,
    config_errors,
    missing_stack_file,
    missing_tool,
    pulumi_prerequisite,
    report,
)
from selfhost.stack_file import PROJECT_DIR, SECRET, stack_config
from stacks.config import ConfigError, load_config

SMOKE_RETRY_SECONDS = 30
ERROR_LINE = re.compile(r"\berror: (.+)")
DEFAULT_SERVE_TIMEOUT_SECONDS = 1800

NO_SUMMARY = (
    "the Pulumi CLI ended without reporting a summary (it may have crashed or been stopped): run "
    "`pulumi preview` in the project directory to see its own output."
)
# The project's policy pack, enforced on every preview and update (policy/PulumiPolicy.yaml).
POLICY_PACK = PROJECT_DIR / "policy"

# The kubeconfig's exec plugin when `aws` is missing: this fails mid-update, after resources were created.
AWS_CLI_MISSING = (
    'exec: "aws": executable file not found',
    "The cluster's kubeconfig runs `aws eks get-token`: install the AWS CLI v2, put `aws` on PATH and run the "
    "command again.",
)
# What each command does to a stack, for the sentence that says the Pulumi CLI is missing.
DOES = {
    "preview": "to preview a stack",
    "up": "to deploy a stack",
    "destroy": "to destroy a stack",
    "refresh": "to refresh a stack",
    "outputs": "to read a stack's outputs",
}


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stack", nargs="?", default="dev", help="stack name (Pulumi.STACK.yaml), default dev")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the outputs as one JSON object"
        if name == "outputs"
        else "machine output on stdout (engine events as JSON lines)",
    )
    if name != "outputs":
        parser.add_argument("--diff", action="store_true", help="show the property-level diff of each change")
    if name == "preview":
        parser.add_argument(
            "--summary",
            type=Path,
            metavar="FILE",
            help="Markdown summary file, default build/preview-STACK.md",
        )
        parser.add_argument(
            "--existing-only",
            action="store_true",
            help="preview only a stack that exists (CI): report a missing one as not deployed yet, never create it",
        )
    if name == "up":
        parser.add_argument(
            "--skip-smoke", action="store_true", help="do not wait for the model nor smoke-test"
        )
        parser.add_argument(
            "--serve-timeout",
            type=int,
            default=DEFAULT_SERVE_TIMEOUT_SECONDS,
            metavar="SECONDS",
            help=f"how long to wait for the model to serve, default {DEFAULT_SERVE_TIMEOUT_SECONDS}",
        )
    if name == "destroy":
        parser.add_argument("--yes", action="store_true", help="destroy without asking for the stack name")
    if name == "outputs":
        parser.add_argument("--show-secrets", action="store_true", help="print secret outputs in plain text")
    parser.set_defaults(run=_guarded(name, _OPERATIONS[name]))


def _guarded(
    name: str, operation: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """Run `operation` with the checks every command shares, turning engine failures into one sentence."""

    def run(args: argparse.Namespace) -> int:
        # What can be checked offline comes first: a stack file (a typo would create a new stack) and, for
        # the commands that run the program, a valid config; then the CLI.
        if name in ("preview", "up"):
            problem = offline_problem(args.stack)
            if problem is not None:
                return report(name, args.stack, problem)
        if shutil.which("pulumi") is None:
            return report(
                name,
                args.stack,
                missing_tool("pulumi", DOES[name], "use `selfhost plan`, which does not"),
            )
        try:
            return operation(args)
        except CommandError as error:
            return report(name, args.stack, *explain_failure(error, args.stack, name))
        except InvalidVersionError as error:
            return report(name, args.stack, f"{error} Install a newer Pulumi CLI and run the command again.")
        except RuntimeError as error:
            # The Automation API's own check after a preview: the CLI exited without its summary event.
            if "summary event never found" not in str(error):
                raise
            return report(name, args.stack, NO_SUMMARY, EXIT_FAILED)

    return run


def explain_failure(
    error: CommandError, stack: str, operation: str, events: Iterable[Mapping[str, Any]] = ()
) -> tuple[str, int]:
    """One sentence on what to do after the engine failed, from the error's type, its output and the
    operation's engine events (a mandatory policy violation is named with its rule and resource), and the
    exit code: 2 when what was missing stopped it before anything ran, 1 when something ran and failed."""
    stopped_by = mandatory_violations(events)
    if stopped_by:
        more = f" (and {len(stopped_by) - 1} more: see the summary)" if len(stopped_by) > 1 else ""
        return f"the policy pack stopped the {operation}: {stopped_by[0].sentence()}{more}", EXIT_FAILED
    if isinstance(error, ConcurrentUpdateError):
        return (
            f"Stack {stack} is locked by another update: wait for it to finish, or if that run died, release "
            f"the lock with `pulumi cancel --stack {stack}`, run `selfhost refresh {stack}` and try again.",
            EXIT_PREREQUISITE,
        )
    missing = pulumi_prerequisite(str(error), stack)
    if missing is not None:
        # Credentials can also expire halfway through an update: then something ran.
        return missing, EXIT_FAILED if changed_anything(events) else EXIT_PREREQUISITE
    needle, sentence = AWS_CLI_MISSING
    if needle in str(error):
        return sentence, EXIT_FAILED
    reason = last_error_line(str(error))
    said = f" (the engine said: {reason})" if reason else ""
    return (
        f"pulumi {operation} failed{said}: read the diagnostics above, fix their cause and run it again.",
        EXIT_FAILED,
    )


def last_error_line(output: str) -> str:
    """The last `error: ...` message in the CLI's output (a CommandError holds its stdout and stderr)."""
    found = [match.group(1) for match in ERROR_LINE.finditer(strip_ansi(output))]
    return found[-1].strip().rstrip(".") if found else ""


def secrets_provider(stack_file: Path) -> str | None:
    """The `secretsprovider` a stack file names (e.g. awskms://...), used when the stack is created."""
    if not stack_file.is_file():
        return None
    settings = yaml.safe_load(stack_file.read_text()) or {}
    provider = settings.get("secretsprovider")
    return provider if isinstance(provider, str) and provider else None


def short_name(stack: str) -> str:
    """The stack's own name: a Pulumi Cloud stack may be named ORG/PROJECT/STACK."""
    return stack.rsplit("/", 1)[-1]


def stack_file(stack: str) -> Path:
    return PROJECT_DIR / f"Pulumi.{short_name(stack)}.yaml"


def offline_problem(stack: str) -> str | None:
    """What is wrong with the stack before Pulumi is involved: a missing stack file (a typo would create a
    stack by mistake) or a config the program would refuse. None when both are fine."""
    path = stack_file(stack)
    if not path.is_file():
        return missing_stack_file(path)
    raw, secret_keys = stack_config(short_name(stack), PROJECT_DIR)
    try:
        load_config(raw, short_name(stack), secret_keys=secret_keys, secrets_readable=False)
    except ConfigError as error:
        return config_errors(error.errors)
    return None


def open_stack(stack: str, create: bool) -> auto.Stack:
    """Select the stack (or create it, for preview and up) on the project directory's workspace."""
    options = auto.LocalWorkspaceOptions(secrets_provider=secrets_provider(stack_file(stack)))
    if create:
        return auto.create_or_select_stack(stack, work_dir=str(PROJECT_DIR), opts=options)
    return auto.select_stack(stack, work_dir=str(PROJECT_DIR), opts=options)


class Console:
    """Where engine output goes: progress to stdout (stderr with --json), engine events as JSON lines."""

    def __init__(self, json_mode: bool, capture: bool = False) -> None:
        self.json_mode = json_mode
        self.events: list[dict[str, Any]] = []
        self.captured: list[str] = []
        self._capture = capture
        self._lock = threading.Lock()

    def _write(self, stream: TextIO, line: str) -> None:
        with self._lock:
            print(line, file=stream, flush=True)

    def output(self, line: str) -> None:
        if self._capture:
            self.captured.append(line)
        self._write(sys.stderr if self.json_mode else sys.stdout, line)

    def error(self, line: str) -> None:
        self._write(sys.stderr, line)

    def event(self, event: auto.EngineEvent) -> None:
        data = engine_event_json(event)
        self.events.append(data)
        if self.json_mode:
            self._write(sys.stdout, json.dumps(data, sort_keys=True))

    def note(self, line: str) -> None:
        """A message of this command (not the engine's): stderr with --json, stdout otherwise."""
        self._write(sys.stderr if self.json_mode else sys.stdout, line)

    @property
    def color(self) -> str:
        stream = sys.stderr if self.json_mode else sys.stdout
        return "always" if stream.isatty() else "never"

    def engine_options(self, diff: bool, events: bool = False) -> dict[str, Any]:
        """What every engine operation (preview, up, destroy, refresh) is given to report through this
        console; engine events are collected when asked for, and always with --json."""
        return {
            "diff": diff,
            "color": self.color,
            "on_output": self.output,
            "on_error": self.error,
            "on_event": self.event if events or self.json_mode else None,
        }


def _preview(args: argparse.Namespace) -> int:
    console = Console(args.json, capture=True)
    summary_file: Path = args.summary or PROJECT_DIR / "build" / f"preview-{short_name(args.stack)}.md"
    try:
        stack = open_stack(args.stack, create=not args.existing_only)
    except StackNotFoundError:
        # A pull request may come before the stack's first deploy: say so instead of creating an empty stack
        # (whose `pulumi up` would collide with a real cluster's AWS names in another organisation).
        write_summary(summary_file, not_deployed_markdown(args.stack))
        console.note(f"Stack {args.stack} is not deployed yet; nothing to preview. Summary: {summary_file}")
        return 0
    try:
        stack.preview(**console.engine_options(args.diff, events=True), policy_packs=[str(POLICY_PACK)])
    except CommandError as error:
        sentence, code = explain_failure(error, args.stack, "preview", console.events)
        write_summary(summary_file, failure_markdown(args.stack, "preview", sentence, console.events))
        return report("preview", args.stack, sentence, code)
    markdown = preview_markdown(args.stack, console.events, "\n".join(console.captured) if args.diff else "")
    write_summary(summary_file, markdown)
    console.note(f"Preview summary: {summary_file}")
    return 0


def write_summary(path: Path, markdown: str) -> None:
    """Write the summary to `path` and, in GitHub Actions, append it to the job's step summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")


def _up(args: argparse.Namespace) -> int:
    console = Console(args.json)
    stack = open_stack(args.stack, create=True)
    # Events are collected so that a policy violation that stops the update is named in the last line.
    try:
        result = stack.up(**console.engine_options(args.diff, events=True), policy_packs=[str(POLICY_PACK)])
    except CommandError as error:
        return report("up", args.stack, *explain_failure(error, args.stack, "up", console.events))
    changes = ", ".join(
        f"{op} {count}" for op, count in sorted((result.summary.resource_changes or {}).items())
    )
    console.note(f"Update of stack {args.stack}: {result.summary.result} ({changes or 'no changes'}).")
    if args.skip_smoke:
        return 0
    return wait_for_model(args.stack, args.serve_timeout, console)


def wait_for_model(stack: str, timeout_seconds: int, console: Console) -> int:
    """Run `selfhost smoke STACK` until it passes: the model's weights download and load after `up` ends."""
    deadline = time.monotonic() + timeout_seconds
    attempt = 1
    while True:
        console.note(f"Smoke check of stack {stack}, attempt {attempt}:")
        code = smoke(stack)
        if code == 0:
            return 0
        if time.monotonic() + SMOKE_RETRY_SECONDS > deadline:
            console.error(
                f"selfhost up {stack}: the model did not pass the smoke check within {timeout_seconds} s: look at "
                "the vLLM pod's events and logs (kubectl describe pod / kubectl logs) and rerun `selfhost smoke`."
            )
            return 1
        attempt += 1
        time.sleep(SMOKE_RETRY_SECONDS)


def _destroy(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            print(
                f"selfhost destroy {args.stack}: this deletes every resource of the stack; pass --yes to confirm.",
                file=sys.stderr,
            )
            return 2
        answer = input(f"This deletes every resource of stack {args.stack}. Type the stack name to confirm: ")
        if answer.strip() != args.stack:
            print("Nothing was destroyed.", file=sys.stderr)
            return 1
    console = Console(args.json)
    stack = open_stack(args.stack, create=False)
    # Events are collected so that a failure says whether anything was deleted before it.
    try:
        result = stack.destroy(**console.engine_options(args.diff, events=True))
    except CommandError as error:
        return report("destroy", args.stack, *explain_failure(error, args.stack, "destroy", console.events))
    console.note(f"Destroy of stack {args.stack}: {result.summary.result}.")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    console = Console(args.json)
    stack = open_stack(args.stack, create=False)
    try:
        result = stack.refresh(**console.engine_options(args.diff, events=True))
    except CommandError as error:
        return report("refresh", args.stack, *explain_failure(error, args.stack, "refresh", console.events))
    console.note(f"Refresh of stack {args.stack}: {result.summary.result}.")
    return 0


def _outputs(args: argparse.Namespace) -> int:
    outputs = open_stack(args.stack, create=False).outputs()
    shown = {
        name: (output.value if args.show_secrets or not output.secret else SECRET)
        for name, output in sorted(outputs.items())
    }
    if args.json:
        print(json.dumps(shown, indent=2, sort_keys=True))
        return 0
    if not shown:
        print(f"Stack {args.stack} has no outputs yet: run `selfhost up {args.stack}`.")
        return 0
    width = max(len(name) for name in shown)
    for name, value in shown.items():
        text = value if isinstance(value, str) else json.dumps(value)
        print(f"{name.ljust(width)}  {text}")
    return 0


_OPERATIONS: dict[str, Callable[[argparse.Namespace], int]] = {
    "preview": _preview,
    "up": _up,
    "destroy": _destroy,
    "refresh": _refresh,
    "outputs": _outputs,
}

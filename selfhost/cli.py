"""`selfhost`: the command line.

Every command lives in its own module, imported only when that command runs: `selfhost plan` never loads
the Automation API or the HTTP clients, and `selfhost --help` loads none of them. The table below is what
the top-level help shows; each module adds its command's arguments with `add_arguments(name, parser)`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    module: str
    help: str


COMMANDS: dict[str, Command] = {
    "plan": Command(
        "selfhost.plan.command", "write the offline plan of a stack (no cloud credentials needed)"
    ),
    "simulate": Command(
        "selfhost.simulate",
        "replay a request trace through the stack's scaling policy: GPU node-hours, cost, cold starts, waits",
    ),
    "preview": Command(
        "selfhost.automation.command", "show what `up` would change, and write a Markdown summary of it"
    ),
    "up": Command(
        "selfhost.automation.command",
        "create or update the stack's resources, then wait for the model and smoke-test it",
    ),
    "destroy": Command(
        "selfhost.automation.command", "delete every resource of the stack (its history and config stay)"
    ),
    "refresh": Command(
        "selfhost.automation.command", "read the real state of the stack's resources from AWS and Kubernetes"
    ),
    "outputs": Command("selfhost.automation.command", "print the stack's outputs"),
    "chat": Command("selfhost.clients", "serve a chat page for the endpoint on localhost and print its URL"),
    "smoke": Command(
        "selfhost.clients", "check /health, /v1/models and one chat completion; exit 0 only when all pass"
    ),
    "bench": Command(
        "selfhost.clients",
        "load-test the endpoint: TTFT, inter-token latency and throughput per concurrency level",
    ),
}


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    """The parser of every command's name and help; only `chosen` gets its arguments (and its import)."""
    parser = argparse.ArgumentParser(
        prog="selfhost", description="Plan, deploy and use a self-hosted LLM endpoint on EKS."
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        subparser = subcommands.add_parser(
            name, help=command.help, description=command.help[0].upper() + command.help[1:] + "."
        )
        if name == chosen:
            importlib.import_module(command.module).add_arguments(name, subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    chosen = next((arg for arg in arguments if not arg.startswith("-")), None)
    args = build_parser(chosen).parse_args(arguments)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

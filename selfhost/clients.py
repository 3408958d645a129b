"""The `selfhost chat`, `selfhost smoke` and `selfhost bench` commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from pathlib import Path

from chat import bench
from chat.api import EndpointError, list_models, new_client
from chat.endpoint import (
    USE_BASE_URL,
    Endpoint,
    EndpointSetupError,
    MissingPrerequisite,
    StackOutputsUnread,
    add_endpoint_arguments,
    open_endpoint,
)
from chat.smoke import format_results, run_smoke
from selfhost.prerequisites import EXIT_FAILED, EXIT_PREREQUISITE, missing_tool, pulumi_prerequisite, report

DEFAULT_CHAT_PORT = 7860
DEFAULT_CONCURRENCY = "1,8,32"
DEFAULT_DURATION_SECONDS = 30.0


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    {"chat": _chat_arguments, "smoke": _smoke_arguments, "bench": _bench_arguments}[name](parser)


def smoke(stack: str) -> int:
    """`selfhost smoke STACK`, for `selfhost up` to wait on."""
    parser = argparse.ArgumentParser(prog="selfhost smoke")
    _smoke_arguments(parser)
    return run_smoke_command(parser.parse_args([stack]))


def _chat_arguments(chat: argparse.ArgumentParser) -> None:
    add_endpoint_arguments(chat)
    chat.add_argument("--model", help="model to preselect (default: the first one /v1/models lists)")
    chat.add_argument(
        "--port", type=_port, default=DEFAULT_CHAT_PORT, help=f"local port (default {DEFAULT_CHAT_PORT})"
    )
    chat.set_defaults(run=run_chat)


def _smoke_arguments(smoke: argparse.ArgumentParser) -> None:
    add_endpoint_arguments(smoke)
    smoke.add_argument("--model", help="model to ask (default: the first one /v1/models lists)")
    smoke.add_argument("--timeout", type=_positive_float, default=60.0, help="seconds per check (default 60)")
    smoke.set_defaults(run=run_smoke_command)


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    add_endpoint_arguments(bench)
    bench.add_argument("--model", help="model to load (default: the first one /v1/models lists)")
    bench.add_argument(
        "--concurrency",
        type=_concurrency_levels,
        default=_concurrency_levels(DEFAULT_CONCURRENCY),
        help=f"comma-separated concurrency levels, run in order (default {DEFAULT_CONCURRENCY})",
    )
    bench.add_argument(
        "--prompt-tokens", type=_positive_int, default=512, help="approximate prompt length (default 512)"
    )
    bench.add_argument(
        "--output-tokens", type=_positive_int, default=128, help="tokens to generate (default 128)"
    )
    budget = bench.add_mutually_exclusive_group()
    budget.add_argument(
        "--duration",
        type=_positive_float,
        help=f"seconds per level (default {DEFAULT_DURATION_SECONDS:g} unless --requests is given)",
    )
    budget.add_argument("--requests", type=_positive_int, help="requests per level instead of a duration")
    bench.add_argument(
        "--api",
        choices=("chat", "completions"),
        default="chat",
        help="endpoint to load: /v1/chat/completions (default) or /v1/completions",
    )
    bench.add_argument(
        "--ignore-eos",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask vLLM to generate exactly --output-tokens (default on; turn off for servers other than vLLM)",
    )
    bench.add_argument(
        "--timeout", type=_positive_float, default=300.0, help="seconds one request may take (default 300)"
    )
    bench.add_argument(
        "--warmup", type=_non_negative_int, default=1, help="unmeasured requests first (default 1)"
    )
    bench.add_argument("--seed", type=int, default=0, help="seed for the synthetic prompts (default 0)")
    bench.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
    bench.set_defaults(run=run_bench_command)


# A command stopped with Ctrl-C exits as a shell reports SIGINT: 128 + 2.
EXIT_INTERRUPTED = 130
CHAT_EXTRA_MISSING = (
    "the chat page needs Gradio, which deployments leave out: install the `chat` extra with "
    "`uv sync --extra chat` (or `pip install 'self-hosted-llm[chat]'`) and run the command again."
)


def setup_failure(command: str, args: argparse.Namespace, error: EndpointSetupError) -> int:
    """Why the endpoint could not be opened, in the one style of every command: a missing prerequisite
    (found before anything ran) exits 2, a failure of what ran exits 1."""
    stack = _stack(args)
    if isinstance(error, MissingPrerequisite):
        sentence = missing_tool(error.tool, error.needed_for, USE_BASE_URL) if error.tool else str(error)
        return report(command, stack, sentence, EXIT_PREREQUISITE)
    if isinstance(error, StackOutputsUnread):
        missing = pulumi_prerequisite(error.output, error.stack)
        if missing is not None:
            return report(command, stack, missing, EXIT_PREREQUISITE)
    return report(command, stack, str(error), EXIT_FAILED)


def run_chat(args: argparse.Namespace) -> int:
    if not port_is_free(args.port):
        return report(
            "chat",
            None,
            f"127.0.0.1:{args.port} is taken (or needs privileges): pass a free --port.",
            EXIT_PREREQUISITE,
        )
    # Gradio is an optional extra and takes seconds (tens on a cold disk) to import: only `selfhost chat` asks
    # for it, and says what it is waiting for.
    print("Loading the chat page...", flush=True)
    try:
        from chat.app import serve
    except ModuleNotFoundError as error:
        if error.name != "gradio":
            raise
        return report("chat", _stack(args), CHAT_EXTRA_MISSING)
    try:
        with open_endpoint(args) as endpoint:
            print(f"Endpoint: {endpoint.source}")
            serve(endpoint, args.model, args.port, lambda url: print(f"Chat page: {url}  (Ctrl-C stops it)"))
    except EndpointSetupError as error:
        return setup_failure("chat", args, error)
    except OSError:
        # gradio raises OSError when it cannot bind the port: another program took it since the check.
        return report(
            "chat",
            None,
            f"the chat page could not listen on 127.0.0.1:{args.port}; pass a free --port.",
            EXIT_FAILED,
        )
    return 0


def _stack(args: argparse.Namespace) -> str | None:
    """The stack a client command talks to, or None with --base-url."""
    return None if args.base_url else args.stack


def port_is_free(port: int) -> bool:
    """Whether the chat page can listen on 127.0.0.1:port, checked before anything is printed or opened."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_smoke_command(args: argparse.Namespace) -> int:
    try:
        with open_endpoint(args) as endpoint:
            print(f"Smoke test of {endpoint.source}")
            results = asyncio.run(run_smoke(endpoint, args.model, args.timeout))
    except EndpointSetupError as error:
        return setup_failure("smoke", args, error)
    except KeyboardInterrupt:
        return report("smoke", _stack(args), "interrupted.", EXIT_INTERRUPTED)
    print(format_results(results))
    passed = sum(result.status == "PASS" for result in results)
    if passed == len(results):
        print(f"All {len(results)} checks passed.")
        return 0
    print(f"{passed} of {len(results)} checks passed.")
    return 1


def run_bench_command(args: argparse.Namespace) -> int:
    try:
        with open_endpoint(args) as endpoint:
            print(f"Benchmark of {endpoint.source}", file=sys.stderr)
            return asyncio.run(_bench(endpoint, args))
    except EndpointSetupError as error:
        return setup_failure("bench", args, error)
    except KeyboardInterrupt:
        return report("bench", _stack(args), "interrupted.", EXIT_INTERRUPTED)


async def _bench(endpoint: Endpoint, args: argparse.Namespace) -> int:
    try:
        async with new_client(endpoint, timeout=30.0) as client:
            models = await list_models(client, endpoint)
    except EndpointError as error:
        return report("bench", _stack(args), str(error), EXIT_FAILED)
    if args.model is not None and args.model not in models:
        return report(
            "bench",
            _stack(args),
            f"The endpoint does not serve {args.model!r}; it serves {', '.join(models)}.",
            EXIT_FAILED,
        )
    settings = bench.BenchSettings(
        model=args.model or models[0],
        concurrency_levels=args.concurrency,
        prompt_tokens=args.prompt_tokens,
        output_tokens=args.output_tokens,
        duration=args.duration if args.duration or args.requests else DEFAULT_DURATION_SECONDS,
        requests=args.requests,
        api=args.api,
        ignore_eos=args.ignore_eos,
        timeout=args.timeout,
        warmup_requests=args.warmup,
        seed=args.seed,
    )
    print(
        f"model {settings.model}, ~{settings.prompt_tokens} prompt tokens, {settings.output_tokens} output "
        f"tokens, /v1/{'chat/completions' if settings.api == 'chat' else 'completions'}",
        file=sys.stderr,
    )
    aborted: str | None = None
    try:
        levels = await bench.run_benchmark(
            endpoint, settings, progress=lambda line: print(line, file=sys.stderr)
        )
    except bench.BenchmarkAborted as error:
        aborted, levels = str(error), error.levels
    if levels:
        print(bench.format_table(levels))
    errors = bench.format_errors(levels)
    if errors:
        print(f"\nErrors:\n{errors}")
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(bench.report(endpoint, settings, levels), indent=2) + "\n")
        except OSError as error:
            return report(
                "bench", _stack(args), f"Could not write {args.json}: {error.strerror}.", EXIT_FAILED
            )
    if aborted is not None:
        return report("bench", _stack(args), f"The benchmark stopped. {aborted}", EXIT_FAILED)
    if any(level.completed == 0 for level in levels):
        return report(
            "bench",
            _stack(args),
            "No request succeeded at some concurrency level; see the errors above.",
            EXIT_FAILED,
        )
    return 0


def _concurrency_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more concurrency levels of 1 or more")
    return levels


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port")
    return value

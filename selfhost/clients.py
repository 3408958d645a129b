"""The `selfhost chat`, `selfhost smoke` and `selfhost bench` commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from chat.api import EndpointError, list_models, new_client
from chat.bench import BenchmarkAborted, BenchSettings, format_errors, format_table, report, run_benchmark
from chat.endpoint import Endpoint, EndpointSetupError, add_endpoint_arguments, open_endpoint
from chat.smoke import format_results, run_smoke

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


CHAT_EXTRA_MISSING = (
    "The chat page needs Gradio, which deployments leave out: install the `chat` extra with "
    "`uv sync --extra chat` (or `pip install 'self-hosted-llm[chat]'`) and run `selfhost chat` again."
)


def run_chat(args: argparse.Namespace) -> int:
    # Gradio is an optional extra and takes seconds to import: only `selfhost chat` asks for it.
    try:
        from chat.app import serve
    except ModuleNotFoundError as error:
        if error.name != "gradio":
            raise
        return _fail(CHAT_EXTRA_MISSING, code=2)
    try:
        with open_endpoint(args, "chat") as endpoint:
            print(f"Endpoint: {endpoint.source}")
            print(f"Chat page: http://127.0.0.1:{args.port}  (Ctrl-C stops it)")
            serve(endpoint, args.model, args.port)
    except EndpointSetupError as error:
        return _fail(str(error))
    except OSError:
        # gradio raises OSError when it cannot bind the port (taken, or below 1024 without privileges).
        return _fail(f"The chat page could not listen on 127.0.0.1:{args.port}; pass a free --port.")
    return 0


def run_smoke_command(args: argparse.Namespace) -> int:
    try:
        with open_endpoint(args, "smoke") as endpoint:
            print(f"Smoke test of {endpoint.source}")
            results = asyncio.run(run_smoke(endpoint, args.model, args.timeout))
    except EndpointSetupError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("Interrupted.", code=130)
    print(format_results(results))
    passed = sum(result.status == "PASS" for result in results)
    if passed == len(results):
        print(f"All {len(results)} checks passed.")
        return 0
    print(f"{passed} of {len(results)} checks passed.")
    return 1


def run_bench_command(args: argparse.Namespace) -> int:
    try:
        with open_endpoint(args, "bench") as endpoint:
            print(f"Benchmark of {endpoint.source}", file=sys.stderr)
            return asyncio.run(_bench(endpoint, args))
    except EndpointSetupError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("Interrupted.", code=130)


async def _bench(endpoint: Endpoint, args: argparse.Namespace) -> int:
    try:
        async with new_client(endpoint, timeout=30.0) as client:
            models = await list_models(client, endpoint)
    except EndpointError as error:
        return _fail(str(error))
    if args.model is not None and args.model not in models:
        return _fail(f"The endpoint does not serve {args.model!r}; it serves {', '.join(models)}.")
    settings = BenchSettings(
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
        levels = await run_benchmark(endpoint, settings, progress=lambda line: print(line, file=sys.stderr))
    except BenchmarkAborted as error:
        aborted, levels = str(error), error.levels
    if levels:
        print(format_table(levels))
    errors = format_errors(levels)
    if errors:
        print(f"\nErrors:\n{errors}")
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(report(endpoint, settings, levels), indent=2) + "\n")
        except OSError as error:
            return _fail(f"Could not write {args.json}: {error.strerror}.")
    if aborted is not None:
        return _fail(f"The benchmark stopped. {aborted}")
    if any(level.completed == 0 for level in levels):
        return _fail("No request succeeded at some concurrency level; see the errors above.")
    return 0


def _fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


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

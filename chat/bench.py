"""`selfhost bench`: a closed-loop load test at a series of concurrency levels.

At each level, N workers each keep one streamed request in flight until the level's request count or
duration is used up (a request running at the deadline is allowed to finish), which is what
`vllm bench serve --max-concurrency N` does with an infinite request rate. Metric definitions are in
`chat.timing`; throughput is divided by the level's wall-clock time, as vLLM's benchmark does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from chat.api import Api, CompletionRequest, EndpointError, new_client, stream_completion
from chat.endpoint import Endpoint
from chat.prompts import synthetic_prompt
from chat.timing import StreamTiming

PERCENTILES = (50, 95, 99)
# Statuses after which every later request would fail the same way: measuring on would only add noise.
FATAL_STATUSES = (401, 403, 404)


@dataclass(frozen=True)
class BenchSettings:
    model: str
    concurrency_levels: tuple[int, ...]
    prompt_tokens: int
    output_tokens: int
    duration: float | None = None
    requests: int | None = None
    api: Api = "chat"
    ignore_eos: bool = True
    timeout: float = 300.0
    warmup_requests: int = 1
    seed: int = 0


@dataclass(frozen=True)
class Distribution:
    """Summary of one latency, in milliseconds."""

    mean: float
    p50: float
    p95: float
    p99: float

    @classmethod
    def of_seconds(cls, values: Sequence[float]) -> Distribution | None:
        if not values:
            return None
        ordered = sorted(value * 1000.0 for value in values)
        p50, p95, p99 = (percentile(ordered, p) for p in PERCENTILES)
        return cls(mean=statistics.fmean(ordered), p50=p50, p95=p95, p99=p99)


@dataclass(frozen=True)
class LevelResult:
    concurrency: int
    completed: int
    failed: int
    duration_s: float
    request_throughput: float
    output_token_throughput: float
    total_token_throughput: float
    mean_prompt_tokens: float | None
    mean_output_tokens: float | None
    ttft_ms: Distribution | None
    itl_ms: Distribution | None
    tpot_ms: Distribution | None
    e2el_ms: Distribution | None
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class _Outcome:
    timing: StreamTiming | None = None
    error: str | None = None
    fatal: bool = False


class BenchmarkAborted(Exception):
    """A request failed in a way every later one would (endpoint gone, key refused); results so far attached."""

    def __init__(self, message: str, levels: list[LevelResult]) -> None:
        super().__init__(message)
        self.levels = levels


def percentile(ordered: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks, as numpy.percentile's default method does."""
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# How often a running level reports its progress.
PROGRESS_SECONDS = 5.0


async def run_benchmark(
    endpoint: Endpoint, settings: BenchSettings, progress: Callable[[str], None]
) -> list[LevelResult]:
    rng = random.Random(settings.seed)
    requests = (_request(settings, rng, index) for index in itertools.count())
    levels: list[LevelResult] = []
    # One single-connection client per worker rather than one pool for all: httpcore 1.0's pool rescans
    # all its connections, counting the idle ones inside that scan, each time a request starts or ends
    # (encode/httpcore#1035). At 64 streams that bookkeeping took most of the client's CPU and capped
    # the throughput it measured; 64 pools of one connection stay cheap. They share one TLS context.
    tls = httpx.create_ssl_context()
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                new_client(endpoint, timeout=settings.timeout, connections=1, verify=tls)
            )
            for _ in range(max(settings.concurrency_levels))
        ]
        for _ in range(settings.warmup_requests):
            outcome = await _send(clients[0], endpoint, next(requests), settings.timeout)
            if outcome.error is not None:
                raise BenchmarkAborted(f"The warm-up request failed: {outcome.error}", levels)
        for concurrency in settings.concurrency_levels:
            progress(f"concurrency {concurrency}: {_budget(settings)}")
            level, fatal = await _run_level(clients[:concurrency], endpoint, settings, requests, progress)
            levels.append(level)
            if fatal is not None:
                raise BenchmarkAborted(fatal, levels)
    return levels


async def _run_level(
    clients: Sequence[httpx.AsyncClient],
    endpoint: Endpoint,
    settings: BenchSettings,
    requests: Iterator[CompletionRequest],
    progress: Callable[[str], None],
) -> tuple[LevelResult, str | None]:
    outcomes: list[_Outcome] = []
    budget = (
        itertools.repeat(None) if settings.requests is None else itertools.repeat(None, settings.requests)
    )
    started = time.perf_counter()
    deadline = None if settings.duration is None else started + settings.duration
    stop = asyncio.Event()

    async def worker(client: httpx.AsyncClient) -> None:
        # The budget iterator is shared: next() on it is atomic between awaits, so no lock is needed.
        for _ in budget:
            if stop.is_set() or (deadline is not None and time.perf_counter() >= deadline):
                return
            outcome = await _send(client, endpoint, next(requests), settings.timeout)
            outcomes.append(outcome)
            if outcome.fatal:
                stop.set()

    async def report_progress() -> None:
        # A level can run for minutes: say how far it is, every PROGRESS_SECONDS, on the progress stream.
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            done = sum(outcome.error is None for outcome in outcomes)
            failed = len(outcomes) - done
            so_far = (
                f"{len(outcomes)} of {settings.requests} requests"
                if settings.requests is not None
                else f"{time.perf_counter() - started:.0f} of {settings.duration:g} s"
            )
            progress(f"  concurrency {len(clients)}: {so_far}, {done} answered, {failed} failed")

    reporter = asyncio.create_task(report_progress())
    try:
        await asyncio.gather(*(worker(client) for client in clients))
    finally:
        reporter.cancel()
    elapsed = time.perf_counter() - started
    fatal = next((outcome.error for outcome in outcomes if outcome.fatal), None)
    return _summarize(len(clients), outcomes, elapsed), fatal


async def _send(
    client: httpx.AsyncClient, endpoint: Endpoint, request: CompletionRequest, timeout: float
) -> _Outcome:
    timing = StreamTiming()
    try:
        # httpx's timeout bounds each read; this bounds the whole answer.
        async with asyncio.timeout(timeout):
            async for event in stream_completion(client, endpoint, request):
                timing.observe(event)
    except EndpointError as error:
        return _Outcome(error=str(error), fatal=error.unreachable or error.status in FATAL_STATUSES)
    except TimeoutError:
        return _Outcome(error=f"No complete answer within {timeout:g} s.")
    if timing.first_token_at is None:
        return _Outcome(error="The stream ended without any generated text.")
    return _Outcome(timing=timing)


def _summarize(concurrency: int, outcomes: Sequence[_Outcome], elapsed: float) -> LevelResult:
    timings = [outcome.timing for outcome in outcomes if outcome.timing is not None]
    errors = Counter(outcome.error for outcome in outcomes if outcome.error is not None)
    output_tokens = [timing.output_tokens for timing in timings]
    prompt_tokens = [timing.prompt_tokens for timing in timings if timing.prompt_tokens is not None]
    elapsed = max(elapsed, 1e-9)
    return LevelResult(
        concurrency=concurrency,
        completed=len(timings),
        failed=sum(errors.values()),
        duration_s=elapsed,
        request_throughput=len(timings) / elapsed,
        output_token_throughput=sum(output_tokens) / elapsed,
        total_token_throughput=(sum(output_tokens) + sum(prompt_tokens)) / elapsed,
        mean_prompt_tokens=statistics.fmean(prompt_tokens) if prompt_tokens else None,
        mean_output_tokens=statistics.fmean(output_tokens) if output_tokens else None,
        ttft_ms=Distribution.of_seconds([t.ttft for t in timings if t.ttft is not None]),
        itl_ms=Distribution.of_seconds([gap for t in timings for gap in t.inter_token_latencies]),
        tpot_ms=Distribution.of_seconds([t.tpot for t in timings if t.tpot is not None]),
        e2el_ms=Distribution.of_seconds([t.e2e_latency for t in timings if t.e2e_latency is not None]),
        errors=dict(errors),
    )


def format_table(levels: Sequence[LevelResult]) -> str:
    header: tuple[str, ...] = (
        "concurrency",
        "ok",
        "errors",
        "req/s",
        "out tok/s",
        "TTFT ms p50/p95/p99",
        "ITL ms p50/p95/p99",
        "TPOT ms p50",
        "E2E s p50/p95/p99",
    )
    rows: list[tuple[str, ...]] = [header]
    for level in levels:
        rows.append(
            (
                str(level.concurrency),
                str(level.completed),
                str(level.failed),
                f"{level.request_throughput:.2f}",
                f"{level.output_token_throughput:.1f}",
                _triple(level.ttft_ms, 1.0, "{:.0f}"),
                _triple(level.itl_ms, 1.0, "{:.1f}"),
                "-" if level.tpot_ms is None else f"{level.tpot_ms.p50:.1f}",
                _triple(level.e2el_ms, 1000.0, "{:.2f}"),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_errors(levels: Sequence[LevelResult]) -> str:
    lines = []
    for level in levels:
        for message, count in sorted(level.errors.items(), key=lambda item: -item[1]):
            lines.append(f"concurrency {level.concurrency}: {count} x {message}")
    return "\n".join(lines)


def report(endpoint: Endpoint, settings: BenchSettings, levels: Sequence[LevelResult]) -> dict[str, Any]:
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "endpoint": endpoint.base_url,
        "settings": asdict(settings),
        "levels": [asdict(level) for level in levels],
    }


def _request(settings: BenchSettings, rng: random.Random, index: int) -> CompletionRequest:
    prompt = synthetic_prompt(rng, index, settings.prompt_tokens)
    return CompletionRequest(
        model=settings.model,
        max_tokens=settings.output_tokens,
        messages=({"role": "user", "content": prompt},) if settings.api == "chat" else (),
        prompt=prompt if settings.api == "completions" else "",
        api=settings.api,
        # Sampling stays on (temperature 1, the API default) as in vLLM's benchmark; with ignore_eos
        # the output length is fixed either way.
        ignore_eos=settings.ignore_eos,
    )


def _budget(settings: BenchSettings) -> str:
    if settings.requests is not None:
        return f"{settings.requests} requests"
    return f"{settings.duration:g} s"


def _triple(distribution: Distribution | None, divisor: float, number: str) -> str:
    if distribution is None:
        return "-"
    return "/".join(
        number.format(value / divisor) for value in (distribution.p50, distribution.p95, distribution.p99)
    )

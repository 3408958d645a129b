"""`selfhost smoke`: is the endpoint up, does it list its model, does it answer a short chat?

Three checks in order, each timed: `/health`, `/v1/models`, one streamed chat completion. A check that
cannot run because an earlier one showed the endpoint unreachable is skipped rather than failed again
with the same message.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import anyio.lowlevel
import httpx

from chat.api import (
    CompletionRequest,
    EndpointError,
    TextDelta,
    check_health,
    list_models,
    stream_completion,
)
from chat.endpoint import Endpoint
from chat.timing import StreamTiming

SMOKE_PROMPT = "Reply with one word: ready."
SMOKE_MAX_TOKENS = 16

Status = Literal["PASS", "FAIL", "SKIP"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    latency_s: float | None
    detail: str


async def run_smoke(endpoint: Endpoint, model: str | None, timeout: float) -> list[CheckResult]:
    results: list[CheckResult] = []
    unreachable = False
    models: list[str] = []

    async def timed(name: str, check: Callable[[], Awaitable[str]]) -> None:
        nonlocal unreachable
        if unreachable:
            results.append(CheckResult(name, "SKIP", None, "the endpoint is unreachable"))
            return
        started = time.perf_counter()
        try:
            detail = await check()
        except EndpointError as error:
            unreachable = error.unreachable
            results.append(CheckResult(name, "FAIL", time.perf_counter() - started, str(error)))
            return
        results.append(CheckResult(name, "PASS", time.perf_counter() - started, detail))

    async with httpx.AsyncClient(headers=endpoint.headers(), timeout=timeout) as client:
        # httpx loads anyio's event-loop backend on its first request; loading it here keeps tens of
        # milliseconds of imports out of the first check's latency.
        await anyio.lowlevel.checkpoint()

        async def health() -> str:
            await check_health(client, endpoint)
            return "200 OK"

        async def model_list() -> str:
            models.extend(await list_models(client, endpoint))
            if model is not None and model not in models:
                raise EndpointError(f"The endpoint does not serve {model!r}; it serves {', '.join(models)}.")
            return ", ".join(models)

        async def chat() -> str:
            chosen = model or (models[0] if models else None)
            assert chosen is not None, "the models check passed, so it listed one"
            request = CompletionRequest(
                model=chosen,
                max_tokens=SMOKE_MAX_TOKENS,
                messages=({"role": "user", "content": SMOKE_PROMPT},),
                temperature=0.0,
            )
            timing = StreamTiming()
            text = ""
            async for event in stream_completion(client, endpoint, request):
                timing.observe(event)
                if isinstance(event, TextDelta):
                    text += event.text
            if timing.ttft is None:
                raise EndpointError(f"{chosen} answered with no text.")
            answer = " ".join(text.split())
            return f"TTFT {timing.ttft * 1000:.0f} ms, {timing.output_tokens} tokens: {answer[:60]!r}"

        await timed("health", health)
        await timed("models", model_list)
        if model is None and not models:
            # Without --model the chat check asks the first model listed; the models check said why there is
            # none (a refused key, a server still loading), and repeating it here would only mislead.
            results.append(
                CheckResult("chat completion", "SKIP", None, "no model to ask: see the models check")
            )
        else:
            await timed("chat completion", chat)
    return results


def format_results(results: list[CheckResult]) -> str:
    width = max(len(result.name) for result in results)
    lines = []
    for result in results:
        latency = "" if result.latency_s is None else f"{result.latency_s * 1000:.0f} ms"
        lines.append(f"  {result.status}  {result.name.ljust(width)}  {latency:>8}  {result.detail}")
    return "\n".join(lines)

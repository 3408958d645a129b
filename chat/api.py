"""The OpenAI-compatible API as vLLM serves it: health, models, streamed completions, and errors said plainly.

Everything that can go wrong in a way a user can act on (server down, model loading, wrong key, bad
request) becomes an `EndpointError` whose message is one sentence, so no caller shows a traceback.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from chat.endpoint import Endpoint
from chat.sse import iter_sse_data

Api = Literal["chat", "completions"]
API_PATHS: dict[Api, str] = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


class EndpointError(Exception):
    """A failure talking to the endpoint, with a message for a person.

    `unreachable` is set when no HTTP answer came back at all (down, loading, tunnel gone), so that
    callers can skip checks that would only fail the same way.
    """

    def __init__(self, message: str, *, status: int | None = None, unreachable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable


@dataclass(frozen=True)
class TextDelta:
    """Generated text as it arrived, stamped with `time.perf_counter()` when it was parsed."""

    text: str
    at: float


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class CompletionRequest:
    """One streamed generation: chat messages for `/v1/chat/completions`, or a prompt for `/v1/completions`."""

    model: str
    max_tokens: int
    messages: tuple[dict[str, str], ...] = ()
    prompt: str = ""
    api: Api = "chat"
    temperature: float | None = None
    ignore_eos: bool = False

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "stream": True,
            # The final chunk then carries the token counts, so nobody has to run a tokenizer.
            "stream_options": {"include_usage": True},
        }
        if self.api == "chat":
            payload["messages"] = list(self.messages)
        else:
            payload["prompt"] = self.prompt
        if self.temperature is not None:
            payload["temperature"] = self.temperature
        if self.ignore_eos:
            # vLLM's extra sampling parameter (docs: "OpenAI-Compatible Server", extra parameters):
            # generate exactly max_tokens, so a benchmark's output length does not depend on the model.
            payload["ignore_eos"] = True
        return payload


def new_client(
    endpoint: Endpoint, *, timeout: float, connections: int = 10, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """A client whose pool keeps up to `connections` connections open for reuse.

    `verify` takes a TLS context to share: building one (loading the CA bundle) takes tens of ms.
    """
    return httpx.AsyncClient(
        headers=endpoint.headers(),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        verify=verify,
    )


async def check_health(client: httpx.AsyncClient, endpoint: Endpoint) -> None:
    """vLLM's `/health` answers 200 once the engine runs; it needs no API key (vLLM's AuthenticationMiddleware
    checks the key only under /v1, /v2, /inference and /cohere)."""
    await _get(client, endpoint, "/health")


async def list_models(client: httpx.AsyncClient, endpoint: Endpoint) -> list[str]:
    response = await _get(client, endpoint, "/v1/models")
    try:
        data = response.json()["data"]
        models = [str(entry["id"]) for entry in data]
    except (ValueError, KeyError, TypeError):
        raise EndpointError(
            f"{endpoint.base_url}/v1/models did not answer with an OpenAI model list"
        ) from None
    if not models:
        raise EndpointError(f"The endpoint at {endpoint.base_url} serves no model yet.")
    return models


async def stream_completion(
    client: httpx.AsyncClient, endpoint: Endpoint, request: CompletionRequest
) -> AsyncIterator[TextDelta | Usage]:
    """Send one streamed request and yield its text as it arrives, then its token usage when given."""
    url = endpoint.url(API_PATHS[request.api])
    try:
        async with client.stream("POST", url, json=request.payload()) as response:
            if response.status_code != 200:
                await response.aread()
                raise EndpointError(
                    explain_status(response.status_code, response.reason_phrase, response.text),
                    status=response.status_code,
                )
            async for data in iter_sse_data(response.aiter_bytes()):
                at = time.perf_counter()
                if data == "[DONE]":
                    # Read on to the end of the body rather than break: a response closed early takes
                    # its connection down with it, and the next request would pay for a new one.
                    continue
                event = _parse_chunk(data, request.api)
                if isinstance(event, str):
                    if event:
                        yield TextDelta(event, at)
                elif event is not None:
                    yield event
    except httpx.TransportError as error:
        raise EndpointError(explain_transport(endpoint, error), unreachable=_unreachable(error)) from None


def explain_status(status: int, reason: str, body: str) -> str:
    detail = _server_message(body).rstrip(".")
    said = f": {detail}" if detail else ""
    if status in (401, 403):
        return (
            f"The endpoint refused the API key ({status} {reason}); "
            "check --api-key or the stack's api_key output."
        )
    if status == 503:
        return (
            "The model server is not ready (503 Service Unavailable): it is probably still loading "
            "the model; try again in a minute."
        )
    if status == 404:
        return f"The endpoint has no such model or route (404){said}."
    if status >= 500:
        return f"The model server failed on this request ({status} {reason}){said}."
    if 400 <= status < 500:
        return f"The endpoint rejected the request ({status} {reason}){said}."
    return f"The endpoint answered {status} {reason}{said}."


def explain_transport(endpoint: Endpoint, error: httpx.TransportError) -> str:
    tunnel = endpoint.tunnel
    if tunnel is not None and not tunnel.running():
        why = f" ({tunnel.last_error()})" if tunnel.last_error() else ""
        return (
            f"The kubectl port-forward to svc/{tunnel.target.service} stopped{why}: the vLLM pod has "
            "probably restarted; it is reopened on the next request."
        )
    refused = _certificate_error(error)
    if refused is not None:
        return (
            f"The TLS certificate of {endpoint.base_url} did not verify ({refused.verify_message}): it must be "
            "valid and cover the name in the URL."
        )
    if isinstance(error, httpx.ConnectError):
        return (
            f"Nothing answers at {endpoint.base_url}: the endpoint is down, or the model is still "
            "loading (vLLM opens its port only once the weights are loaded)."
        )
    if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError):
        # Through kubectl port-forward, a pod that is not listening yet looks like this: the local
        # port accepts the connection and kubectl closes it when the pod side refuses.
        return (
            f"The endpoint at {endpoint.base_url} closed the connection without answering: the model "
            "server is probably still starting."
        )
    if isinstance(error, httpx.TimeoutException):
        return f"The endpoint at {endpoint.base_url} did not answer in time."
    return f"Could not talk to the endpoint at {endpoint.base_url}: {error}."


def _certificate_error(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed under httpx's transport error, if that is what failed."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


async def _get(client: httpx.AsyncClient, endpoint: Endpoint, path: str) -> httpx.Response:
    try:
        response = await client.get(endpoint.url(path))
    except httpx.TransportError as error:
        raise EndpointError(explain_transport(endpoint, error), unreachable=_unreachable(error)) from None
    if response.status_code != 200:
        raise EndpointError(
            explain_status(response.status_code, response.reason_phrase, response.text),
            status=response.status_code,
        )
    return response


def _unreachable(error: httpx.TransportError) -> bool:
    """A slow answer from a busy server is no sign that the endpoint is gone; anything else is."""
    return not isinstance(error, httpx.ReadTimeout | httpx.WriteTimeout | httpx.PoolTimeout)


def _parse_chunk(data: str, api: Api) -> str | Usage | None:
    """The text of one stream chunk, its usage (final chunk), or None for chunks without either."""
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise EndpointError(f"The endpoint sent a stream chunk that is not JSON: {data[:80]!r}") from None
    if not isinstance(chunk, dict):
        return None
    if "error" in chunk:
        # vLLM reports failures that happen after the 200 header as an error chunk in the stream.
        raise EndpointError(f"The model server failed while answering: {_error_text(chunk)}.")
    choices = chunk.get("choices")
    if choices:
        choice = choices[0]
        if api == "chat":
            return (choice.get("delta") or {}).get("content") or ""
        return choice.get("text") or ""
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    return None


def _server_message(body: str) -> str:
    """The human part of an error body: vLLM sends {"error": {"message": ...}}, {"error": "Unauthorized"}
    (its auth middleware) or, in older releases, {"object": "error", "message": ...}."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return " ".join(body.split())[:200]
    return _error_text(data) if isinstance(data, dict) else ""


def _error_text(data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or "").strip()
    if isinstance(error, str):
        return error.strip()
    return str(data.get("message") or data.get("detail") or "").strip()

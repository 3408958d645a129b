"""A local stand-in for vLLM's OpenAI-compatible server, with timings and failures on demand.

Standard library only (asyncio streams, HTTP/1.1 with keep-alive and chunked Server-Sent Events), so it
starts in a fraction of a second and runs in its own process: the client under test then has the
interpreter to itself, as it would against a real server.

Behaviour copied from vLLM: `/health` answers 200 with an empty body; `/v1/*` needs `Authorization:
Bearer KEY` and answers 401 {"error": "Unauthorized"} otherwise, while /health and /metrics stay public
(vllm AuthenticationMiddleware); a chat stream starts with a chunk carrying only the assistant role,
then one chunk per token, a chunk with the finish reason, a usage chunk with empty choices when
`stream_options.include_usage` is set, and `data: [DONE]`; metric names as in vllm/v1/metrics/loggers.py.

Timing: the first token goes out `ttft` seconds after the request arrived, token i at
`ttft + i * token_delay` (scheduled against the clock, so delays do not drift).

Run: `python fake_openai_server.py --port 0 [--api-key KEY] [--ttft S] [--token-delay S]`; it prints
`READY <port>` once it listens. `POST /_fake/config` with a JSON object changes settings at run time,
`GET /_fake/requests` returns the bodies of the completion requests received so far, and
`GET /_fake/streams` when each streamed answer really went out (see StreamRecord): on a busy machine the
server falls behind its schedule too, and a test of the client compares with what the server did.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

ANSWER = (
    "Hello from the fake model. This answer streams one token at a time so that tests can time it, "
    "and it goes on for as many tokens as the request allows."
)
ANSWER_WORDS = ANSWER.split(" ")

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class FakeConfig:
    api_key: str | None = "test-key"
    models: list[str] = field(default_factory=lambda: ["fake-model"])
    ttft: float = 0.0
    token_delay: float = 0.0
    # True: /health and /v1/* answer 503, as while vLLM loads behind a proxy that already listens.
    loading: bool = False
    # Not 200: every completion request answers this status (error injection).
    completion_status: int = 200
    # N > 0: every Nth completion request answers 500.
    fail_every: int = 0
    default_max_tokens: int = 16
    # N > 0: like a model reaching its end-of-sequence token, answers stop after N tokens
    # (finish_reason "stop") unless the request sets vLLM's ignore_eos.
    answer_tokens: int = 0


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # Which TCP connection carried it, numbered from 0 in the order the server accepted them.
    connection: int = 0


@dataclass
class StreamRecord:
    """One streamed answer as the server sent it, in seconds on the server's own `time.perf_counter()`."""

    connection: int
    arrived: float
    first_token_sent: float
    last_token_sent: float
    tokens: int


class FakeOpenAIServer:
    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.completion_bodies: list[dict[str, Any]] = []
        self.stream_records: list[StreamRecord] = []
        self.connections = 0
        self.running = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.success_total = 0

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self._connection, host, port, backlog=512)
        bound_port = server.sockets[0].getsockname()[1]
        print(f"READY {bound_port}", flush=True)
        async with server:
            await server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = self.connections
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                request.connection = connection
                await self._dispatch(request, writer)
        with contextlib.suppress(ConnectionError):
            writer.close()

    async def _dispatch(self, request: Request, writer: asyncio.StreamWriter) -> None:
        config = self.config
        route = (request.method, request.path)
        if route == ("GET", "/health"):
            await _send(writer, 503 if config.loading else 200, b"", "application/json")
        elif route == ("GET", "/metrics"):
            await _send(writer, 200, self._metrics().encode(), "text/plain; version=0.0.4")
        elif route == ("POST", "/_fake/config"):
            changes = json.loads(request.body or b"{}")
            self.config = dataclasses.replace(config, **changes)
            await _send_json(writer, 200, dataclasses.asdict(self.config))
        elif route == ("GET", "/_fake/requests"):
            await _send_json(writer, 200, self.completion_bodies)
        elif route == ("GET", "/_fake/streams"):
            await _send_json(writer, 200, [dataclasses.asdict(record) for record in self.stream_records])
        elif request.path.startswith("/v1/"):
            await self._api(request, writer)
        else:
            await _send_json(writer, 404, {"detail": "Not Found"})

    async def _api(self, request: Request, writer: asyncio.StreamWriter) -> None:
        config = self.config
        if config.api_key is not None and request.headers.get("authorization") != f"Bearer {config.api_key}":
            await _send_json(writer, 401, {"error": "Unauthorized"})
            return
        if config.loading:
            await _send_json(writer, 503, _error("The model is loading.", "ServiceUnavailableError", 503))
            return
        route = (request.method, request.path)
        if route == ("GET", "/v1/models"):
            models = [
                {"id": name, "object": "model", "owned_by": "vllm", "root": name} for name in config.models
            ]
            await _send_json(writer, 200, {"object": "list", "data": models})
        elif route in (("POST", "/v1/chat/completions"), ("POST", "/v1/completions")):
            await self._completion(request, writer, chat=request.path.endswith("/chat/completions"))
        else:
            await _send_json(writer, 404, {"detail": "Not Found"})

    async def _completion(self, request: Request, writer: asyncio.StreamWriter, *, chat: bool) -> None:
        arrived = time.perf_counter()
        config = self.config
        body = json.loads(request.body or b"{}")
        self.completion_bodies.append(body)
        if config.completion_status != 200:
            status = config.completion_status
            await _send_json(
                writer, status, _error(f"Injected failure {status}.", "InternalServerError", status)
            )
            return
        if config.fail_every and len(self.completion_bodies) % config.fail_every == 0:
            await _send_json(writer, 500, _error("Injected failure.", "InternalServerError", 500))
            return
        model = body.get("model")
        if model not in config.models:
            await _send_json(
                writer, 404, _error(f"The model `{model}` does not exist.", "NotFoundError", 404)
            )
            return
        max_tokens = int(
            body.get("max_tokens") or body.get("max_completion_tokens") or config.default_max_tokens
        )
        stops_early = (
            bool(config.answer_tokens) and config.answer_tokens < max_tokens and not body.get("ignore_eos")
        )
        answer_tokens = config.answer_tokens if stops_early else max_tokens
        finish_reason = "stop" if stops_early else "length"
        if chat:
            prompt_text = "".join(str(message.get("content", "")) for message in body.get("messages", []))
        else:
            prompt_text = str(body.get("prompt", ""))
        usage = {
            "prompt_tokens": max(1, len(prompt_text) // 4),
            "completion_tokens": answer_tokens,
            "total_tokens": max(1, len(prompt_text) // 4) + answer_tokens,
        }
        tokens = [
            ("" if index == 0 else " ") + ANSWER_WORDS[index % len(ANSWER_WORDS)]
            for index in range(answer_tokens)
        ]
        self.running += 1
        try:
            if body.get("stream"):
                first_sent, last_sent = await self._stream(
                    writer, body, tokens, usage, arrived, chat=chat, finish_reason=finish_reason
                )
                self.stream_records.append(
                    StreamRecord(request.connection, arrived, first_sent, last_sent, len(tokens))
                )
            else:
                await _sleep_until(arrived + config.ttft + (answer_tokens - 1) * config.token_delay)
                text = "".join(tokens)
                choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason}
                if chat:
                    choice["message"] = {"role": "assistant", "content": text}
                else:
                    choice["text"] = text
                await _send_json(
                    writer, 200, {"id": _id(), "object": _object(chat), "choices": [choice], "usage": usage}
                )
        finally:
            self.running -= 1
        self.prompt_tokens_total += usage["prompt_tokens"]
        self.generation_tokens_total += answer_tokens
        self.success_total += 1

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        body: dict[str, Any],
        tokens: list[str],
        usage: dict[str, int],
        arrived: float,
        *,
        chat: bool,
        finish_reason: str,
    ) -> tuple[float, float]:
        """Send the answer as Server-Sent Events; return when its first and last tokens were sent."""
        config = self.config
        sent: list[float] = []
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        )
        completion_id = _id()

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            return {"id": completion_id, "object": _object(chat) + ".chunk", "choices": choices, **extra}

        await _sleep_until(arrived + config.ttft)
        if chat:
            await _write_event(writer, chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]))
        for index, token in enumerate(tokens):
            await _sleep_until(arrived + config.ttft + index * config.token_delay)
            if chat:
                choice: dict[str, Any] = {"index": 0, "delta": {"content": token}, "finish_reason": None}
            else:
                choice = {"index": 0, "text": token, "finish_reason": None}
            await _write_event(writer, chunk([choice]))
            sent.append(time.perf_counter())
        finish: dict[str, Any] = {"index": 0, "finish_reason": finish_reason}
        finish.update({"delta": {}} if chat else {"text": ""})
        await _write_event(writer, chunk([finish]))
        if (body.get("stream_options") or {}).get("include_usage"):
            await _write_event(writer, chunk([], usage=usage))
        await _write_chunk(writer, b"data: [DONE]\n\n")
        await _write_chunk(writer, b"")
        return (sent[0], sent[-1]) if sent else (arrived, arrived)

    def _metrics(self) -> str:
        labels = ",".join(f'model_name="{name}"' for name in self.config.models[:1])
        series = (
            (
                "vllm:num_requests_running",
                "gauge",
                "Number of requests in model execution batches.",
                self.running,
            ),
            ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", 0),
            (
                "vllm:prompt_tokens_total",
                "counter",
                "Number of prefill tokens processed.",
                self.prompt_tokens_total,
            ),
            (
                "vllm:generation_tokens_total",
                "counter",
                "Number of generation tokens processed.",
                self.generation_tokens_total,
            ),
            (
                "vllm:request_success_total",
                "counter",
                "Count of successfully processed requests.",
                self.success_total,
            ),
        )
        lines = []
        for name, kind, help_text, value in series:
            family = name.removesuffix("_total") if kind == "counter" else name
            lines += [
                f"# HELP {family} {help_text}",
                f"# TYPE {family} {kind}",
                f"{name}{{{labels}}} {float(value)}",
            ]
        return "\n".join(lines) + "\n"


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    request_line = await reader.readline()
    if not request_line.strip():
        return None
    method, target, _version = request_line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return Request(method, target.split("?", 1)[0], headers, body)


async def _send(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str) -> None:
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + body)
    await writer.drain()


async def _send_json(writer: asyncio.StreamWriter, status: int, payload: object) -> None:
    await _send(writer, status, json.dumps(payload).encode(), "application/json")


async def _write_event(writer: asyncio.StreamWriter, payload: dict[str, Any]) -> None:
    await _write_chunk(writer, b"data: " + json.dumps(payload).encode() + b"\n\n")


async def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def _error(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def _object(chat: bool) -> str:
    return "chat.completion" if chat else "text_completion"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="test-key", help="empty: no key needed")
    parser.add_argument("--ttft", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args()
    config = FakeConfig(api_key=args.api_key or None, ttft=args.ttft, token_delay=args.token_delay)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(FakeOpenAIServer(config).serve(args.host, args.port))


if __name__ == "__main__":
    main()

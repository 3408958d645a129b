"""The pure parts: SSE parsing, error sentences, timings, the conversation, prompts, stack outputs."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from chat.api import TextDelta, Usage, explain_status
from chat.conversation import Conversation, timing_summary
from chat.endpoint import EndpointSetupError, ServiceTarget, normalize_base_url, service_target
from chat.prompts import CHARACTERS_PER_TOKEN, synthetic_prompt
from chat.sse import iter_sse_data
from chat.timing import StreamTiming


def parse_sse(*chunks: bytes) -> list[str]:
    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def collect() -> list[str]:
        return [data async for data in iter_sse_data(stream())]

    return asyncio.run(collect())


def test_sse_events_split_anywhere_are_put_back_together() -> None:
    body = b'data: {"a": 1}\n\ndata: {"b": "\xc3\xa9"}\n\ndata: [DONE]\n\n'
    whole = parse_sse(body)
    assert whole == ['{"a": 1}', '{"b": "é"}', "[DONE]"]
    for cut in range(1, len(body)):
        assert parse_sse(body[:cut], body[cut:]) == whole


def test_sse_comments_fields_line_endings_and_multiline_data() -> None:
    body = b": ping\r\n\r\nevent: message\r\nid: 7\r\ndata: first\r\ndata:second\r\n\r\ndata: last"
    assert parse_sse(body[:20], body[20:41], body[41:]) == ["first\nsecond", "last"]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            '{"error": "Unauthorized"}',
            "The endpoint refused the API key (401 Unauthorized); check --api-key",
        ),
        (503, "", "The model server is not ready (503 Service Unavailable): it is probably still loading"),
        (
            400,
            '{"object": "error", "message": "This model\'s maximum context length is 4096 tokens.", "code": 400}',
            "The endpoint rejected the request (400 Bad Request): This model's maximum context length is "
            "4096 tokens.",
        ),
        (
            404,
            '{"error": {"message": "The model `x` does not exist.", "type": "NotFoundError", "code": 404}}',
            "The endpoint has no such model or route (404): The model `x` does not exist.",
        ),
        (
            502,
            "<html>Bad gateway</html>",
            "The model server failed on this request (502 Bad Gateway): <html>",
        ),
    ],
)
def test_error_sentences(status: int, body: str, expected: str) -> None:
    reasons = {
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        502: "Bad Gateway",
        503: "Service Unavailable",
    }
    assert explain_status(status, reasons[status], body).startswith(expected)


def test_timing_follows_vllms_definitions() -> None:
    timing = StreamTiming(started_at=10.0)
    for at in (10.25, 10.30, 10.40, 10.45):
        timing.observe(TextDelta("x", at))
    timing.observe(Usage(prompt_tokens=12, completion_tokens=5))

    assert timing.ttft == pytest.approx(0.25)
    assert timing.inter_token_latencies == pytest.approx([0.05, 0.10, 0.05])
    assert timing.e2e_latency == pytest.approx(0.45)
    # The server's count wins over the chunk count: (0.45 - 0.25) / (5 - 1) = 0.05 s per token.
    assert timing.output_tokens == 5
    assert timing.tpot == pytest.approx(0.05)
    assert timing_summary(timing) == "TTFT 0.25 s · 20.0 tokens/s · 5 tokens"


def test_a_single_token_answer_has_no_rate() -> None:
    timing = StreamTiming(started_at=0.0)
    timing.observe(TextDelta("Yes", 0.5))
    assert timing.tpot is None
    assert timing_summary(timing) == "TTFT 0.50 s · 1 token"


def test_conversation_sends_answers_but_not_timings_or_failures() -> None:
    conversation = Conversation()
    first = conversation.ask("Hi?")
    first.answer, first.footer = "Hello.", "TTFT 0.10 s"
    failed = conversation.ask("Still there?")
    failed.error = "Nothing answers at http://127.0.0.1:1."
    conversation.ask("Third?")

    assert conversation.api_messages("  Be brief. ") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Third?"},
    ]
    assert conversation.display() == [
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello.\n\n*TTFT 0.10 s*"},
        {"role": "user", "content": "Still there?"},
        {"role": "assistant", "content": "**Error:** Nothing answers at http://127.0.0.1:1."},
        {"role": "user", "content": "Third?"},
    ]


def test_prompts_differ_from_the_start_and_have_about_the_asked_length() -> None:
    rng = random.Random(0)
    prompts = [synthetic_prompt(rng, index, 512) for index in range(200)]
    assert len({prompt[:20] for prompt in prompts}) == len(prompts)
    assert len({prompt[60:200] for prompt in prompts}) > 150
    for prompt in prompts:
        assert 512 <= len(prompt) / CHARACTERS_PER_TOKEN <= 512 + 40


def test_base_url_accepts_the_openai_style_v1_suffix() -> None:
    assert normalize_base_url(" http://localhost:8000/v1/ ") == "http://localhost:8000"
    assert normalize_base_url("https://llm.example.com") == "https://llm.example.com"


def test_service_target_from_stack_outputs() -> None:
    outputs = {"endpoint_service": "llm/vllm", "endpoint_port": "8000"}
    assert service_target(outputs, "dev") == ServiceTarget("llm", "vllm", 8000)
    assert service_target({"endpoint_service": "llm/vllm"}, "dev").port == 8000
    for broken in ({}, {"endpoint_service": "vllm"}, {"endpoint_service": "llm/"}):
        with pytest.raises(EndpointSetupError, match="has no endpoint yet"):
            service_target(broken, "dev")
    with pytest.raises(EndpointSetupError, match="endpoint_port output that is no port"):
        service_target({"endpoint_service": "llm/vllm", "endpoint_port": "http"}, "dev")

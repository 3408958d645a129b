"""What one streamed answer took, measured on the client with `time.perf_counter()` (monotonic).

The definitions follow vLLM's serving benchmark (`vllm bench serve`, vllm/benchmarks/serve.py and
vllm/benchmarks/lib/endpoint_request_func.py):
- TTFT: from sending the request to the first generated text.
- ITL (inter-token latency): the gaps between successive text chunks after the first.
- TPOT (time per output token): (end-to-end latency - TTFT) / (output tokens - 1).
- E2E latency: from sending the request to the last generated text.
One difference: vLLM's client counts any chunk with a choice as the first token, including a chunk that
only carries the assistant role; here only a chunk with text counts, so a server that sends the role
before the prefill is done does not get a flattering TTFT.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from chat.api import TextDelta, Usage


@dataclass
class StreamTiming:
    started_at: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    last_token_at: float | None = None
    inter_token_latencies: list[float] = field(default_factory=list)
    text_chunks: int = 0
    usage: Usage | None = None

    def observe(self, event: TextDelta | Usage) -> None:
        if isinstance(event, Usage):
            self.usage = event
            return
        if self.last_token_at is None:
            self.first_token_at = event.at
        else:
            self.inter_token_latencies.append(event.at - self.last_token_at)
        self.last_token_at = event.at
        self.text_chunks += 1

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started_at

    @property
    def e2e_latency(self) -> float | None:
        return None if self.last_token_at is None else self.last_token_at - self.started_at

    @property
    def output_tokens(self) -> int:
        """The server's count when it sent usage, else one token per text chunk (vLLM streams one each)."""
        return self.usage.completion_tokens if self.usage else self.text_chunks

    @property
    def prompt_tokens(self) -> int | None:
        return self.usage.prompt_tokens if self.usage else None

    @property
    def tpot(self) -> float | None:
        if self.ttft is None or self.e2e_latency is None or self.output_tokens < 2:
            return None
        return (self.e2e_latency - self.ttft) / (self.output_tokens - 1)

    @property
    def decode_rate(self) -> float | None:
        """Output tokens per second once generation started (1 / TPOT): what a reader sees scroll by."""
        tpot = self.tpot
        return None if not tpot else 1.0 / tpot

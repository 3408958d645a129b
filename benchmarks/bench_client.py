"""Whether `selfhost bench` keeps up with 64 concurrent streams, or measures itself instead of the server.

The fake OpenAI server (tests/chat/fake_openai_server.py) answers 128 requests, 64 at a time, each with a first
token after 50 ms and 39 more 30 ms apart: 64 streams of 33 tokens/s are about 2,100 events/s for the client
to parse. The server records when it really sent each token, so its pace is known even when a busy machine
slows it down. The figures:

- the client's CPU time as a share of the level's wall time: below TARGET_CPU_SHARE it has CPU to spare;
- the level's duration against the busiest connection's answers on the server's clock (each worker sends
  its requests one after another on one connection, so the level cannot end sooner), after taking out the
  time the client was ready to run but had no CPU: within TARGET_STRETCH the throughput bench reports is the
  server's, not its own;
- the client's median time to first token above the server's: all 64 requests of a round start at once here,
  a burst no real server makes, so some overhead is expected.

    uv run python benchmarks/bench_client.py [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from chat.bench import BenchSettings, run_benchmark
from tests.chat.fake_server_process import (
    FakeServer,
    run_queue_seconds,
    server_pace,
    start_fake_server_process,
)

TARGET_CPU_SHARE = 0.8
# Measured at 2.66 s against 2.45 s of server pace (8.6%) with a CPU to itself.
TARGET_STRETCH = 1 / 0.85


@dataclass(frozen=True)
class Workload:
    server: dict[str, float]
    settings: BenchSettings


STREAMS_64 = Workload(
    server={"ttft": 0.05, "token_delay": 0.03},
    settings=BenchSettings(
        model="fake-model", concurrency_levels=(64,), prompt_tokens=128, output_tokens=40, requests=128
    ),
)


def measure_client(server: FakeServer, settings: BenchSettings) -> dict[str, Any]:
    """One benchmark level against a configured fake server: what the client measured and what it cost."""
    cpu_started, waited_before = time.process_time(), run_queue_seconds()
    (level,) = asyncio.run(run_benchmark(server.endpoint(), settings, progress=lambda _line: None))
    client_cpu = time.process_time() - cpu_started
    starved = run_queue_seconds() - waited_before
    streams = server.stream_records()[1:]  # the warm-up request first
    pace = server_pace(streams)
    return {
        "completed": level.completed,
        "failed": level.failed,
        "streams": len(streams),
        "connections": len({stream["connection"] for stream in streams}),
        "duration_s": round(level.duration_s, 3),
        "starved_s": round(starved, 3),
        "server_busiest_s": round(pace.busiest_s, 3),
        "stretch": round((level.duration_s - starved) / pace.busiest_s, 3),
        "client_cpu_share": round(client_cpu / level.duration_s, 3),
        "ttft_ms_p50": round(level.ttft_ms.p50, 1) if level.ttft_ms else 0.0,
        "ttft_over_server_ms": round(level.ttft_ms.p50 - pace.ttft_ms, 1) if level.ttft_ms else 0.0,
        "tpot_ms_p50": round(level.tpot_ms.p50, 2) if level.tpot_ms else 0.0,
        "itl_ms_mean": round(level.itl_ms.mean, 2) if level.itl_ms else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="`selfhost bench` against 64 concurrent fake streams.")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    server = start_fake_server_process()
    if server is None:
        print("the fake OpenAI server did not start", file=sys.stderr)
        return 2
    try:
        server.configure(**STREAMS_64.server)
        figures = measure_client(server, STREAMS_64.settings)
    finally:
        server.stop()
    kept_up = figures["client_cpu_share"] <= TARGET_CPU_SHARE and figures["stretch"] <= TARGET_STRETCH
    if args.json:
        print(json.dumps({**figures, "kept_up": kept_up}, indent=2))
    else:
        print(
            f"64 streams: {figures['completed']} answered in {figures['duration_s']:.2f} s against "
            f"{figures['server_busiest_s']:.2f} s of server pace ({figures['stretch']:.2f}x after "
            f"{figures['starved_s']:.2f} s without a CPU, target at most {TARGET_STRETCH:.2f}x); client CPU "
            f"{figures['client_cpu_share']:.0%} of the time (target at most {TARGET_CPU_SHARE:.0%}); time to "
            f"first token {figures['ttft_over_server_ms']:.0f} ms above the server's"
        )
    return 0 if kept_up else 1


if __name__ == "__main__":
    sys.exit(main())

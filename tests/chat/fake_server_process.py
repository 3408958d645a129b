"""The fake OpenAI-compatible server as the tests see it: a process to start, reconfigure and stop."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from chat.endpoint import Endpoint

FAKE_SERVER = Path(__file__).with_name("fake_openai_server.py")
SCHEDSTAT = Path("/proc/self/schedstat")
API_KEY = "test-key"


class FakeServer:
    """A running fake_openai_server.py process: reconfigure it, read what it received, stop it."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def endpoint(self, api_key: str | None = API_KEY) -> Endpoint:
        return Endpoint(self.base_url, api_key, source=self.base_url)

    def configure(self, **changes: Any) -> None:
        httpx.post(f"{self.base_url}/_fake/config", json=changes, timeout=5).raise_for_status()

    def completion_requests(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.base_url}/_fake/requests", timeout=5).json()

    def stream_records(self) -> list[dict[str, Any]]:
        """When each streamed answer really went out, on the server's clock (fake_openai_server.StreamRecord)."""
        return httpx.get(f"{self.base_url}/_fake/streams", timeout=5).json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def start_fake_server_process() -> FakeServer | None:
    """Start fake_openai_server.py on a free port; None when it did not say it was ready."""
    process = subprocess.Popen(
        [sys.executable, str(FAKE_SERVER), "--port", "0", "--api-key", API_KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline().split()
    if len(ready) != 2 or ready[0] != "READY":
        process.kill()
        return None
    return FakeServer(process, int(ready[1]))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class ServerPace:
    """What the fake server really did for a set of streams, on its own clock: on a busy machine it falls
    behind its schedule too, and the client must measure that, not the schedule."""

    ttft_ms: float  # median, arrival to first token sent
    e2e_ms: float  # median, arrival to last token sent
    tpot_ms: float  # median per request, (last - first token sent) / (tokens - 1)
    itl_ms: float  # mean gap between tokens, over all streams
    # The connection whose answers took longest in all: each worker sends its requests one after another
    # on its own connection, so a level cannot end sooner.
    busiest_s: float


def server_pace(streams: list[dict[str, Any]]) -> ServerPace:
    def by_stream(value: Callable[[dict[str, Any]], float]) -> float:
        return 1000 * statistics.median(value(stream) for stream in streams)

    connections = {stream["connection"] for stream in streams}
    return ServerPace(
        ttft_ms=by_stream(lambda s: s["first_token_sent"] - s["arrived"]),
        e2e_ms=by_stream(lambda s: s["last_token_sent"] - s["arrived"]),
        tpot_ms=by_stream(lambda s: (s["last_token_sent"] - s["first_token_sent"]) / (s["tokens"] - 1)),
        itl_ms=1000
        * sum(s["last_token_sent"] - s["first_token_sent"] for s in streams)
        / sum(s["tokens"] - 1 for s in streams),
        busiest_s=max(
            sum(s["last_token_sent"] - s["arrived"] for s in streams if s["connection"] == connection)
            for connection in connections
        ),
    )


def run_queue_seconds() -> float:
    """How long this process's main thread (the event loop's) has been ready to run but waiting for a CPU.

    Linux's sched_info: the second field of /proc/PID/schedstat, in nanoseconds (kernel docs,
    scheduler/sched-stats). Elsewhere 0, which leaves figures that subtract it at their strictest.
    """
    try:
        return int(SCHEDSTAT.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0

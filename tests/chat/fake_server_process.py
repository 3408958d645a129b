"""The fake OpenAI-compatible server as the tests see it: a process to start, reconfigure and stop."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from chat.endpoint import Endpoint

FAKE_SERVER = Path(__file__).with_name("fake_openai_server.py")
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

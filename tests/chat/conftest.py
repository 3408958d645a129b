"""Fixtures for the chat tests: the fake OpenAI-compatible server in its own process, and the browser."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chat.fake_server_process import FakeServer, start_fake_server_process

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def start_fake_server() -> Iterator[Callable[..., FakeServer]]:
    """Start fake servers with the given settings (FakeConfig fields); all are stopped after the test."""
    servers: list[FakeServer] = []

    def start(**config: Any) -> FakeServer:
        server = start_fake_server_process()
        if server is None:
            pytest.fail("the fake OpenAI server did not start")
        servers.append(server)
        if config:
            server.configure(**config)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def fake_server(start_fake_server: Callable[..., FakeServer]) -> FakeServer:
    return start_fake_server()


@pytest.fixture
def chromium() -> Path:
    """Debian's chromium and Playwright: required in CI (.ci/run installs them), skipped with a reason elsewhere.

    Playwright drives the system browser only; its own browser download is never used.
    """
    missing = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright Python package (uv sync)")
    if not missing:
        return CHROMIUM
    reason = f"the browser test needs {' and '.join(missing)}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must install it")
    pytest.skip(reason)

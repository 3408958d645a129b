"""The chat page: its handlers against the fake server, then the real page in headless Chromium."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr
import pytest

from chat.app import ChatHandlers, build_app
from chat.conversation import Conversation
from tests.chat.fake_server_process import API_KEY, FakeServer, free_port

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "chat.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--no-first-run",
]


async def _answer(handlers: ChatHandlers, question: str, conversation: Conversation) -> tuple[str, str]:
    """Run one question through the handler; the last status line and the last answer shown."""
    status = ""
    async for _shown, _prompt, new_status, _stats, _conversation in handlers.respond(
        question, "fake-model", "", 0.7, 64, conversation
    ):
        if isinstance(new_status, str):
            status = new_status
    shown = conversation.display()
    return status, shown[-1]["content"] if shown else ""


def test_handlers_stream_and_keep_the_conversation(start_fake_server: Callable[..., FakeServer]) -> None:
    server = start_fake_server(ttft=0.05, answer_tokens=5)
    handlers = ChatHandlers(server.endpoint())
    conversation = Conversation()

    status, answer = asyncio.run(_answer(handlers, "First question?", conversation))
    asyncio.run(_answer(handlers, "Second question?", conversation))

    assert status.startswith("**Connected** to")
    assert answer.startswith("Hello from the fake model.")
    assert re.search(r"\*TTFT 0\.\d\d s · [\d.]+ tokens/s · 5 tokens\*$", answer), answer
    second = server.completion_requests()[-1]
    assert [message["role"] for message in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][1]["content"] == "Hello from the fake model."
    assert second["temperature"] == 0.7 and second["max_tokens"] == 64 and second["stream"] is True


@pytest.mark.parametrize(
    ("config", "api_key", "expected"),
    [
        ({}, "wrong", "The endpoint refused the API key (401 Unauthorized)"),
        ({"loading": True}, API_KEY, "it is probably still loading the model"),
        ({"completion_status": 500}, API_KEY, "The model server failed on this request (500"),
    ],
)
def test_handlers_say_what_went_wrong(
    start_fake_server: Callable[..., FakeServer], config: dict[str, object], api_key: str, expected: str
) -> None:
    server = start_fake_server(**config)
    handlers = ChatHandlers(server.endpoint(api_key))
    conversation = Conversation()

    status, answer = asyncio.run(_answer(handlers, "Hello?", conversation))

    assert expected in status
    assert answer == status
    # The failed question is not sent again as context with the next one.
    assert conversation.api_messages("") == []


def test_refresh_lists_the_models_or_says_why_not(fake_server: FakeServer) -> None:
    dropdown, status = asyncio.run(ChatHandlers(fake_server.endpoint(), "fake-model").refresh_models())
    assert isinstance(dropdown, gr.Dropdown)
    assert dropdown.value == "fake-model"
    assert status == f"**Connected** to {fake_server.base_url} · 1 model"

    _dropdown, status = asyncio.run(ChatHandlers(fake_server.endpoint("wrong")).refresh_models())
    assert status.startswith("**Error:** The endpoint refused the API key")

    fake_server.stop()
    _dropdown, status = asyncio.run(ChatHandlers(fake_server.endpoint()).refresh_models())
    assert status.startswith(f"**Error:** Nothing answers at {fake_server.base_url}")


@pytest.fixture
def chat_page(fake_server: FakeServer) -> Iterator[str]:
    app = build_app(fake_server.endpoint())
    port = free_port()
    app.queue()
    app.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, footer_links=[]
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.close(verbose=False)


# gradio 6.31's queue calls pandas options that pandas 3 deprecates; not this project's to fix.
@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
def test_chat_page_in_a_browser(chromium: Path, chat_page: str, fake_server: FakeServer) -> None:
    from playwright.sync_api import expect, sync_playwright

    # The model thinks for 0.2 s, then writes 24 tokens at 20 tokens/s (one every 0.05 s).
    fake_server.configure(ttft=0.2, token_delay=0.05, answer_tokens=24)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(chat_page)
        status = page.locator("#status")
        chatbot = page.locator("#chatbot")
        expect(status).to_contain_text("Connected to", timeout=20_000)
        expect(page.locator("#model input")).to_have_value("fake-model")

        page.locator("#system-prompt textarea").fill("You are a concise assistant.")
        prompt = page.locator("#prompt textarea")
        prompt.fill("What does vLLM do?")
        prompt.press("Enter")

        # Streamed: the page shows the answer growing before the timings mark its end.
        snapshots = []
        deadline = time.monotonic() + 15
        while "TTFT" not in (text := chatbot.inner_text()) and time.monotonic() < deadline:
            snapshots.append(text)
            page.wait_for_timeout(50)
        assert any("Hello from the fake model" in snapshot for snapshot in snapshots), snapshots[-3:]
        expect(chatbot).to_contain_text("TTFT", timeout=5_000)
        assert "What does vLLM do?" in chatbot.inner_text()
        assert "so that tests can time it, and it goes on for" in chatbot.inner_text()

        stats = page.locator("#answer-stats").inner_text()
        figures = re.search(r"TTFT ([\d.]+) s · ([\d.]+) tokens/s · 24 tokens", stats)
        assert figures, stats
        assert 0.2 <= float(figures.group(1)) <= 0.2 + 0.3
        # 23 tokens after the first, one every 0.05 s: 20 tokens/s at best.
        assert 15 <= float(figures.group(2)) <= 20.5
        sent = fake_server.completion_requests()[-1]
        assert sent["messages"][0] == {"role": "system", "content": "You are a concise assistant."}

        if os.environ.get("SELFHOST_SCREENSHOT"):
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)

        fake_server.stop()
        prompt.fill("Are you still there?")
        prompt.press("Enter")
        expect(status).to_contain_text(f"Nothing answers at {fake_server.base_url}", timeout=10_000)
        expect(chatbot).to_contain_text("Error: Nothing answers at")
        assert "Traceback" not in page.content()
        assert page.locator(".toast-body").count() == 0
        browser.close()

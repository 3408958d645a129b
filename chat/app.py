"""`selfhost chat`: a Gradio page to talk to the endpoint, with the timings of every answer.

The page streams tokens as they arrive, keeps the conversation, and lets the user pick the model (from
/v1/models), the system prompt, temperature and max tokens. Each answer ends with its time to first
token and tokens/s. Failures (endpoint down, model loading, wrong key) show as one sentence in the
status line and in place of the answer, never as a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import gradio as gr

from chat.api import (
    CompletionRequest,
    EndpointError,
    TextDelta,
    check_health,
    list_models,
    new_client,
    stream_completion,
)
from chat.conversation import Conversation, timing_summary
from chat.endpoint import Endpoint, EndpointSetupError
from chat.timing import StreamTiming

DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 512
# Read timeout between two chunks: a long prefill on a busy server can take a while before the first.
REQUEST_TIMEOUT_SECONDS = 300.0
CHECK_TIMEOUT_SECONDS = 10.0

ChatUpdate = tuple[list[dict[str, str]], str, Any, Any, Conversation]


class ChatHandlers:
    """The page's event handlers for one endpoint; plain async functions, so tests call them directly."""

    def __init__(self, endpoint: Endpoint, default_model: str | None = None) -> None:
        self.endpoint = endpoint
        self.default_model = default_model
        self.models_served: int | None = None

    def ready_status(self) -> str:
        count = self.models_served
        served = "" if count is None else f" · {count} model{'' if count == 1 else 's'}"
        return f"**Connected** to {self.endpoint.source}{served}"

    async def refresh_models(self) -> tuple[Any, str]:
        """Check /health and list the models; on failure keep the model list as it was and say why."""
        try:
            await self._ensure_tunnel()
            async with new_client(self.endpoint, timeout=CHECK_TIMEOUT_SECONDS) as client:
                await check_health(client, self.endpoint)
                models = await list_models(client, self.endpoint)
        except (EndpointError, EndpointSetupError) as error:
            return gr.skip(), f"**Error:** {error}"
        self.models_served = len(models)
        status = self.ready_status()
        chosen = models[0]
        if self.default_model in models:
            chosen = self.default_model
        elif self.default_model is not None:
            status += f" · {self.default_model} is not served here, using {chosen}"
        return gr.Dropdown(choices=models, value=chosen), status

    async def respond(
        self,
        question: str,
        model: str | None,
        system_prompt: str,
        temperature: float,
        max_tokens: float,
        conversation: Conversation,
    ) -> AsyncIterator[ChatUpdate]:
        question = question.strip()
        if not question:
            yield conversation.display(), "", gr.skip(), gr.skip(), conversation
            return
        if not model:
            yield (
                conversation.display(),
                question,
                "**Error:** No model is selected: the endpoint listed none yet; press Refresh once it is up.",
                gr.skip(),
                conversation,
            )
            return
        turn = conversation.ask(question)
        yield conversation.display(), "", gr.skip(), gr.skip(), conversation
        request = CompletionRequest(
            model=model,
            max_tokens=int(max_tokens),
            messages=tuple(conversation.api_messages(system_prompt)),
            temperature=float(temperature),
        )
        timing = StreamTiming()
        try:
            await self._ensure_tunnel()
            async with new_client(self.endpoint, timeout=REQUEST_TIMEOUT_SECONDS) as client:
                timing = StreamTiming()  # from here: reopening the tunnel is not the model's latency
                async for event in stream_completion(client, self.endpoint, request):
                    timing.observe(event)
                    if isinstance(event, TextDelta):
                        turn.answer += event.text
                        yield conversation.display(), "", gr.skip(), gr.skip(), conversation
        except (EndpointError, EndpointSetupError) as error:
            turn.error = str(error)
            yield conversation.display(), "", f"**Error:** {error}", gr.skip(), conversation
            return
        except asyncio.CancelledError:
            # Stop pressed: the turn is the session's own object, so this note outlives the task.
            turn.footer = f"stopped · {timing_summary(timing)}"
            raise
        turn.footer = timing_summary(timing)
        yield conversation.display(), "", self.ready_status(), f"**Last answer:** {turn.footer}", conversation

    async def _ensure_tunnel(self) -> None:
        if self.endpoint.tunnel is not None:
            await asyncio.to_thread(self.endpoint.tunnel.ensure_running)


def build_app(endpoint: Endpoint, default_model: str | None = None) -> gr.Blocks:
    handlers = ChatHandlers(endpoint, default_model)
    with gr.Blocks(title="selfhost chat", analytics_enabled=False) as app:
        conversation = gr.State(Conversation())
        gr.Markdown("## Self-hosted LLM chat")
        status = gr.Markdown("Connecting…", elem_id="status")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    elem_id="chatbot",
                    label="Conversation",
                    height=520,
                    feedback_options=None,
                    buttons=["copy"],
                    placeholder="Answers stream here, each followed by its time to first token and tokens/s.",
                )
                prompt = gr.Textbox(
                    elem_id="prompt",
                    show_label=False,
                    placeholder="Ask something (Enter sends, Shift+Enter starts a new line)",
                    # One line to start with: gradio sends on Enter only then (Shift+Enter when lines > 1).
                    lines=1,
                    max_lines=12,
                    submit_btn="Send",
                    autofocus=True,
                )
                with gr.Row():
                    stop = gr.Button("Stop", elem_id="stop", size="sm")
                    new_chat = gr.Button("New conversation", elem_id="new-conversation", size="sm")
            with gr.Column(scale=1):
                model = gr.Dropdown(label="Model", choices=[], value=None, elem_id="model")
                refresh = gr.Button("Refresh", size="sm", elem_id="refresh")
                system_prompt = gr.Textbox(label="System prompt", lines=4, elem_id="system-prompt")
                temperature = gr.Slider(0.0, 2.0, value=DEFAULT_TEMPERATURE, step=0.05, label="Temperature")
                max_tokens = gr.Slider(16, 8192, value=DEFAULT_MAX_TOKENS, step=16, label="Max tokens")
                last_answer = gr.Markdown(elem_id="answer-stats")

        app.load(handlers.refresh_models, outputs=[model, status])
        refresh.click(handlers.refresh_models, outputs=[model, status])
        answering = prompt.submit(
            handlers.respond,
            inputs=[prompt, model, system_prompt, temperature, max_tokens, conversation],
            outputs=[chatbot, prompt, status, last_answer, conversation],
        )
        stop.click(None, cancels=[answering])
        new_chat.click(
            lambda: ([], Conversation(), ""),
            outputs=[chatbot, conversation, last_answer],
            cancels=[answering],
        )
        # The chatbot's own trash button empties the page; the conversation behind it goes too.
        chatbot.clear(lambda: (Conversation(), ""), outputs=[conversation, last_answer], cancels=[answering])
    return app


def serve(
    endpoint: Endpoint, default_model: str | None, port: int, on_listening: Callable[[str], None]
) -> None:
    """Serve the page on localhost until Ctrl-C; the endpoint's tunnel is the caller's to close.
    `on_listening` gets the page's URL once the port is bound, so nobody is shown a URL that answers nothing."""
    app = build_app(endpoint, default_model)
    # One queue slot per open tab would serialize two tabs; a few concurrent answers are fine.
    app.queue(default_concurrency_limit=8)
    app.launch(
        server_name="127.0.0.1",
        server_port=port,
        inbrowser=False,
        share=False,
        quiet=True,
        footer_links=[],
        prevent_thread_lock=True,
    )
    on_listening(f"http://127.0.0.1:{port}")
    app.block_thread()

"""One chat session: what the model is sent and what the page shows, kept apart.

The page shows more than the model should see (timings under each answer, error notices), so the
session keeps turns and derives both views from them. The app updates a turn in place while it streams,
so an answer the user stops halfway stays in the conversation as far as it got, on the page and in the
context of the next question alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chat.timing import StreamTiming


@dataclass
class Turn:
    question: str
    answer: str = ""
    footer: str = ""
    error: str | None = None


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)

    def ask(self, question: str) -> Turn:
        turn = Turn(question)
        self.turns.append(turn)
        return turn

    def api_messages(self, system_prompt: str) -> list[dict[str, str]]:
        """The messages for /v1/chat/completions; failed turns are left out, the model never answered them."""
        messages = [{"role": "system", "content": system_prompt.strip()}] if system_prompt.strip() else []
        for turn in self.turns:
            if turn.error is not None:
                continue
            messages.append({"role": "user", "content": turn.question})
            if turn.answer:
                messages.append({"role": "assistant", "content": turn.answer})
        return messages

    def display(self) -> list[dict[str, str]]:
        """The messages for gr.Chatbot (gradio 6 messages format: dicts with role and content)."""
        shown: list[dict[str, str]] = []
        for turn in self.turns:
            shown.append({"role": "user", "content": turn.question})
            if turn.error is not None:
                shown.append({"role": "assistant", "content": f"**Error:** {turn.error}"})
            elif turn.answer or turn.footer:
                text = turn.answer + (f"\n\n*{turn.footer}*" if turn.footer else "")
                shown.append({"role": "assistant", "content": text})
        return shown


def timing_summary(timing: StreamTiming) -> str:
    """`TTFT 0.21 s · 38.4 tokens/s · 128 tokens`: what one answer took."""
    parts = []
    if timing.ttft is not None:
        parts.append(f"TTFT {timing.ttft:.2f} s")
    if timing.decode_rate is not None:
        parts.append(f"{timing.decode_rate:.1f} tokens/s")
    tokens = timing.output_tokens
    parts.append(f"{tokens} token{'' if tokens == 1 else 's'}")
    return " · ".join(parts)

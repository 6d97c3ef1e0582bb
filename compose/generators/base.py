"""The one generator protocol every backend implements.

Modules never talk to a backend directly: they send chat messages (optionally with a JSON
schema) and get a :class:`Generation` back with the token counts and latency that traces,
evaluation and benchmarks report. A caller that shows the reply while it is generated (token
streaming) passes ``on_text``; backends forward their growing text through
:class:`TextStream`, which sends only text that can no longer change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Generation(BaseModel):
    """One completed generator call."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    model: str = ""
    token_logprobs: list[float] | None = None
    cached_tokens: int = Field(
        default=0,
        description="Prompt tokens not evaluated because the backend kept their KV state from "
        "the previous call (llama.cpp reuses the longest matching prompt prefix).",
    )
    constrained: bool = Field(
        default=False, description="True when the backend enforced the JSON schema itself."
    )

    @property
    def mean_logprob(self) -> float | None:
        if not self.token_logprobs:
            return None
        return sum(self.token_logprobs) / len(self.token_logprobs)


def generation_from_chat_response(
    data: dict[str, Any], *, latency_s: float, model: str, constrained: bool, logprobs: bool
) -> Generation:
    """Read an OpenAI-format chat completion (llama.cpp returns the same shape)."""
    choice = data["choices"][0]
    token_logprobs = None
    if logprobs and choice.get("logprobs"):
        token_logprobs = [entry["logprob"] for entry in choice["logprobs"].get("content") or []]
    usage = data.get("usage") or {}
    return Generation(
        text=choice["message"].get("content") or "",
        tokens_in=usage.get("prompt_tokens", 0),
        tokens_out=usage.get("completion_tokens", 0),
        latency_s=latency_s,
        model=model,
        token_logprobs=token_logprobs,
        constrained=constrained,
    )


class GenerationError(RuntimeError):
    """A backend failed or returned something unusable."""


class ContextOverflowError(GenerationError):
    """The prompt does not fit in the backend's context window: the input is at fault, not
    the backend, so a server answers it as a client error rather than a failure.
    ``tokens`` and ``limit`` are None when the backend does not say."""

    def __init__(self, message: str, *, tokens: int | None = None,
                 limit: int | None = None) -> None:
        super().__init__(message)
        self.tokens = tokens
        self.limit = limit


@runtime_checkable
class Generator(Protocol):
    """What a backend provides. ``model_id`` is part of every cache key."""

    model_id: str
    supports_json_schema: bool

    def generate(
        self,
        messages: list[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        logprobs: bool = False,
        stop: list[str] | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        """One chat completion. ``on_text``, when given, is called with each newly decoded
        piece of the reply, in order, as it is generated; the pieces are whole characters
        and their concatenation is the returned ``Generation.text``. A backend that cannot
        stream calls it once with the whole text."""
        ...

    def count_tokens(self, text: str) -> int: ...


def cut_at_stop(text: str, stop: Iterable[str]) -> str:
    """``text`` up to the earliest occurrence of any stop string."""
    cuts = [text.index(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


class TextStream:
    """Forwards a backend's growing decoded text to ``on_text`` in pieces whose concatenation
    is the final text.

    A backend decodes the tokens so far after each step; the tail of that text is not yet
    certain. A trailing U+FFFD is a multi-byte character split across tokens (tokenizers
    decode the incomplete bytes so), and a tail that could begin a stop string may be cut
    off. Both are held back until later tokens settle them; text after a complete stop
    string is never sent. ``finish`` sends the rest of the reply as the backend returns it.
    """

    def __init__(self, on_text: Callable[[str], None], stop: Iterable[str] = ()) -> None:
        self._on_text = on_text
        self._stop = [s for s in stop if s]
        self._sent = ""
        self._stopped = False

    def update(self, text: str) -> None:
        """``text`` is the whole reply decoded so far."""
        if self._stopped:
            return
        cut = cut_at_stop(text, self._stop)
        if len(cut) < len(text):
            self._stopped = True
        else:
            cut = cut[: len(cut) - self._unsettled(cut)]
        self._send(cut)

    def finish(self, text: str) -> None:
        """``text`` is the final reply (``Generation.text``)."""
        self._send(text)

    def _unsettled(self, text: str) -> int:
        """How many trailing characters may still change: split characters, and before
        them the longest tail that begins a stop string."""
        settled = text.rstrip("\ufffd")
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(settled)), longest, -1):
                if settled.endswith(stop[:size]):
                    longest = size
                    break
        return len(text) - len(settled) + longest

    def _send(self, text: str) -> None:
        if not text.startswith(self._sent):
            raise GenerationError("the backend's decoded text changed after it was streamed: "
                                  f"sent {self._sent!r}, now {text[: len(self._sent)]!r}")
        if len(text) > len(self._sent):
            piece = text[len(self._sent):]
            self._sent = text
            self._on_text(piece)


def context_size(generator: object) -> int | None:
    """How many tokens the backend's context window holds (prompt and answer together), or
    None for a backend that does not say (a remote server, a scripted generator). A server
    checks a request's text against it before running a graph whose prompt cannot fit."""
    size: Callable[[], int | None] | None = getattr(generator, "context_size", None)
    return size() if size is not None else None


def exclusive(generator: object) -> AbstractContextManager[object]:
    """Hold a backend for a run of calls so no other thread's call lands in between: a
    stateful backend (llama.cpp) then keeps the shared prompt prefix's KV state from one call
    to the next. A no-op for backends without such state."""
    hold: Callable[[], AbstractContextManager[object]] | None = getattr(
        generator, "exclusive", None)
    return hold() if hold is not None else nullcontext()

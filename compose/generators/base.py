"""The one generator protocol every backend implements.

Modules never talk to a backend directly: they send chat messages (optionally with a JSON
schema) and get a :class:`Generation` back with the token counts and latency that traces,
evaluation and benchmarks report.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal, Protocol, runtime_checkable

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
    data: dict, *, latency_s: float, model: str, constrained: bool, logprobs: bool
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


@runtime_checkable
class Generator(Protocol):
    """What a backend provides. ``model_id`` is part of every cache key."""

    model_id: str
    supports_json_schema: bool

    def generate(
        self,
        messages: list[Message],
        *,
        json_schema: dict | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        logprobs: bool = False,
        stop: list[str] | None = None,
    ) -> Generation: ...

    def count_tokens(self, text: str) -> int: ...


def context_size(generator) -> int | None:
    """How many tokens the backend's context window holds (prompt and answer together), or
    None for a backend that does not say (a remote server, a scripted generator). A server
    checks a request's text against it before running a graph whose prompt cannot fit."""
    size = getattr(generator, "context_size", None)
    return size() if size is not None else None


def exclusive(generator) -> AbstractContextManager:
    """Hold a backend for a run of calls so no other thread's call lands in between: a
    stateful backend (llama.cpp) then keeps the shared prompt prefix's KV state from one call
    to the next. A no-op for backends without such state."""
    hold = getattr(generator, "exclusive", None)
    return hold() if hold is not None else nullcontext()

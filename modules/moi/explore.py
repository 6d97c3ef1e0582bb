"""The M exploratory generations of MoI, laid out so they share one KV prefix.

The caller's prompt puts the instructions and the question first and the passages last, so
every order's prompt starts with the same tokens; llama.cpp keeps the KV state of the matching
prefix of the previous prompt and evaluates only the rest. The orders are run in
lexicographic order (consecutive prompts then share the longest prefixes) while the generator
is held (``exclusive``) so no other call evicts that state; each pass records the prompt
length and how many of its tokens came from the cache.

A llama.cpp generator decodes the M passes through ``short_answers`` instead: the shared
prefix evaluated once, only the answer string decoded, log-probabilities without
``logits_all``, and optionally as parallel sequences of one batch; other backends take the
sequential path above.

Usage::

    passes = explore(generator, render, [[0, 1, 2], [1, 2, 0]], logprobs=True)
    [p.answer for p in passes], sum(p.tokens_in - p.cached_tokens for p in passes)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from pydantic import BaseModel, Field, ValidationError

from compose.generators.base import Generation, Message, exclusive
from compose.structured import extract_json


class ShortAnswer(BaseModel):
    """What an exploratory pass emits: the answer module's short-answer format, so the
    exploratory answers (and their majority vote) are comparable with the final answer."""

    answer: str = Field(max_length=80)


SHORT_ANSWER_SCHEMA = ShortAnswer.model_json_schema()


class ExplorePass(BaseModel):
    """One exploratory generation: the order shown and what came back."""

    order: list[int]
    answer: str
    mean_logprob: float | None = None
    tokens_in: int = 0
    cached_tokens: int = 0


def explore(generator, render: Callable[[list[int]], list[Message]],
            orders: Sequence[Sequence[int]], *, logprobs: bool, max_tokens: int = 48,
            json_schema: dict | None = None,
            on_generation: Callable[[Generation], None] | None = None) -> list[ExplorePass]:
    """Generate one short answer per order (``render`` builds an order's prompt); results
    come back in the order of ``orders``. ``json_schema`` (default: ``ShortAnswer``) must
    have a string ``answer`` field."""
    if hasattr(generator, "short_answers"):
        return _explore_batched(generator, render, orders, max_tokens, on_generation)
    results: dict[int, ExplorePass] = {}
    with exclusive(generator):
        for index in sorted(range(len(orders)), key=lambda i: list(orders[i])):
            order = list(orders[index])
            generation = generator.generate(render(order),
                                            json_schema=json_schema or SHORT_ANSWER_SCHEMA,
                                            max_tokens=max_tokens, temperature=0.0,
                                            logprobs=logprobs)
            if on_generation is not None:
                on_generation(generation)
            results[index] = ExplorePass(
                order=order, answer=read_answer(generation.text),
                mean_logprob=generation.mean_logprob, tokens_in=generation.tokens_in,
                cached_tokens=generation.cached_tokens)
    return [results[i] for i in range(len(orders))]


def _explore_batched(generator, render, orders, max_tokens, on_generation) -> list[ExplorePass]:
    replies = generator.short_answers([render(list(order)) for order in orders],
                                      max_tokens=max_tokens)
    passes = []
    for order, reply in zip(orders, replies, strict=True):
        if on_generation is not None:
            on_generation(Generation(
                text=json.dumps({"answer": reply.answer}) if reply.complete else reply.answer,
                tokens_in=reply.tokens_in, tokens_out=reply.tokens_out,
                latency_s=reply.latency_s, model=generator.model_id,
                token_logprobs=reply.token_logprobs, cached_tokens=reply.cached_tokens))
        passes.append(ExplorePass(
            order=list(order), answer=reply.answer if reply.complete else "",
            mean_logprob=(sum(reply.token_logprobs) / len(reply.token_logprobs)
                          if reply.token_logprobs else None),
            tokens_in=reply.tokens_in, cached_tokens=reply.cached_tokens))
    return passes


def read_answer(text: str) -> str:
    """The emitted answer; a reply cut off by the token budget counts as no answer."""
    try:
        return ShortAnswer.model_validate_json(extract_json(text)).answer.strip()
    except (ValidationError, ValueError):
        return ""

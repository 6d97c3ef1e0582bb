"""A scripted generator for unit tests of control flow (in the spirit of DSPy's DummyLM).

It returns canned replies in order, or computes them from the messages, and records every
call, so tests can assert on prompts and on how many calls a graph made. It never stands in
for the real model in a test that claims to measure quality. Given ``on_text``, it streams
each reply in pieces of ``PIECE_CHARS`` characters, so control-flow tests can stream too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from compose.generators.base import Generation, Message

PIECE_CHARS = 3


class ScriptedGenerator:
    def __init__(
        self,
        replies: Iterable[str | dict[str, Any]] | Callable[[list[Message]], str | dict[str, Any]],
        *,
        supports_json_schema: bool = True,
        model_id: str = "scripted",
    ) -> None:
        self._reply_fn = replies if callable(replies) else None
        self._replies = [] if callable(replies) else list(replies)
        self.supports_json_schema = supports_json_schema
        self.model_id = model_id
        self.calls: list[list[Message]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages: list[Message], **kwargs: Any) -> Generation:
        self.calls.append(list(messages))
        if self._reply_fn is not None:
            reply = self._reply_fn(messages)
        elif self._replies:
            reply = self._replies.pop(0)
        else:
            raise AssertionError("ScriptedGenerator ran out of replies")
        text = reply if isinstance(reply, str) else json.dumps(reply)
        on_text = kwargs.get("on_text")
        if on_text is not None:
            for start in range(0, len(text), PIECE_CHARS):
                on_text(text[start:start + PIECE_CHARS])
        return Generation(
            text=text,
            tokens_in=sum(self.count_tokens(m.content) for m in messages),
            tokens_out=self.count_tokens(text),
            latency_s=0.0,
            model=self.model_id,
            constrained=kwargs.get("json_schema") is not None,
        )

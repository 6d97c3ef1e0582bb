"""A graph's event stream as OpenAI chat-completion chunks over server-sent events.

The first chunk carries the assistant role. When the graph's answer streams live (its
writer cannot run twice, ``ComposeGraph.answer_streams_live``) each answer token is a
content delta as it is generated; otherwise nothing of the answer is final until the run
ends, so it comes as one delta at the end, and each finished node sends an SSE comment
(``: node retrieve done``), which clients ignore and which keeps proxies from closing an idle
connection. Then the rest of the message (the sources line), a chunk with
``finish_reason: "stop"`` and the run's outputs under ``composerag``, optionally a usage
chunk, and ``data: [DONE]``. The deltas always add up to the non-streamed message.

An OpenAI client cannot take text back, so a ``token_reset`` after text was sent (a reply
that did not parse and was generated again) stops the live deltas; if the final message
does not begin with what was sent, the stream ends with an error event instead of a message
the client would hold wrong. A failed or timed-out run ends the stream with ``data:
{"error": {...}}`` and no ``[DONE]``, which the OpenAI SDK raises as an ``APIError``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel

from compose.serve.openai_api.chat import ChatGraph, usage
from compose.serve.openai_api.errors import error_body
from compose.serve.openai_api.schema import ChatCompletionChunk, ChunkChoice, RunInfo

DONE = "data: [DONE]\n\n"


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def run_error(event: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI error body of a stream's ``error`` event."""
    if event.get("error") == "timeout":
        return error_body(event["detail"], "timeout_error", code="timeout")
    return error_body(event.get("detail", "the graph run failed"), "server_error",
                      code="graph_failed")


class LiveText:
    """The content deltas already sent, and whether a reset made later tokens unsendable."""

    def __init__(self) -> None:
        self.sent = ""
        self.frozen = False

    def token(self, text: str) -> str:
        if self.frozen:
            return ""
        self.sent += text
        return text

    def reset(self) -> None:
        self.frozen = bool(self.sent)

    def rest(self, content: str) -> str | None:
        """What is left of ``content`` to send, or None when what was sent is not its start."""
        return content[len(self.sent):] if content.startswith(self.sent) else None


async def chunks(chat: ChatGraph, request: BaseModel, model: str,
                 include_usage: bool) -> AsyncIterator[str]:
    """The SSE lines of one streamed completion of ``request``."""
    ident, created = completion_id(), int(time.time())

    def chunk(delta: dict[str, str], finish: Literal["stop"] | None = None,
              info: RunInfo | None = None) -> str:
        body = ChatCompletionChunk(id=ident, created=created, model=model, composerag=info,
                                   choices=[ChunkChoice(delta=delta, finish_reason=finish)])
        return _data(body.model_dump(mode="json", exclude={"usage"} if info else
                                     {"usage", "composerag"}))

    yield chunk({"role": "assistant", "content": ""})
    live = chat.service.graph.answer_streams_live
    text = LiveText()
    trace: list[dict[str, Any]] = []
    async for event in chat.service.stream(request, tokens=live):
        kind = event["event"]
        if kind == "node":
            trace.extend(event["update"].get("trace") or [])
            yield f": node {event['node']} done\n\n"
        elif kind == "token":
            piece = text.token(event["text"])
            if piece:
                yield chunk({"content": piece})
        elif kind == "token_reset":
            text.reset()
        elif kind == "error":
            yield _data(run_error(event))
            return
        elif kind == "end":
            rest = text.rest(chat.content(event["output"]))
            if rest is None:
                yield _data(error_body(
                    "the answer was generated again after part of it was streamed; retry "
                    "without stream", "server_error", code="answer_revised"))
                return
            if rest:
                yield chunk({"content": rest})
            yield chunk({}, "stop", RunInfo(graph=event["graph"], output=event["output"],
                                            elapsed_s=event["elapsed_s"]))
            if include_usage:
                yield _data(ChatCompletionChunk(id=ident, created=created, model=model,
                                                choices=[], usage=usage(trace))
                            .model_dump(mode="json", exclude={"composerag"}))
    yield DONE

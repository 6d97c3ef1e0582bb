"""A served graph seen as a chat model: which input takes the question, how earlier turns
reach it, and how its outputs read as one assistant message.

A graph fits when it writes an ``answer`` output and has one text input besides an optional
``history``: the last user message becomes that input. A graph that declares a ``history``
text input gets the turns before it as ``"role: content"`` lines (an empty string on the
first turn); other graphs get only the last message.
Graphs that do not fit stay on their ``/graphs/NAME`` routes and are left out of
``/v1/models``; asking for one names the reason (:class:`UnfitGraph`).

The message is the answer, then a line naming the cited passages (title and id, from the
``passages`` output when the graph returns it). Usage figures are the run's trace totals: the
tokens prompted and generated over every model call of the run (zero for cached calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from compose.serve.openai_api.schema import ChatMessage, Usage
from compose.serve.service import GraphService

HISTORY = "history"
ANSWER = "answer"


class UnfitGraph(ValueError):
    """A graph whose inputs or outputs do not map onto a chat completion."""


def _accepts(annotation: Any, value: Any) -> bool:
    try:
        TypeAdapter(annotation).validate_python(value)
    except ValidationError:
        return False
    return True


@dataclass(frozen=True)
class ChatGraph:
    service: GraphService
    question: str
    takes_history: bool

    def request(self, messages: list[ChatMessage]) -> BaseModel:
        """The graph's request for a conversation ending in a user message. Raises
        ``ValueError`` naming what is wrong (pydantic's ``ValidationError`` included)."""
        last = messages[-1]
        if last.role != "user":
            raise ValueError(f"the last message must be the user's question, not a "
                             f"{last.role!r} message")
        if not (last.content or "").strip():
            raise ValueError("the last user message has no text")
        fields: dict[str, Any] = {self.question: last.content}
        if self.takes_history:
            fields[HISTORY] = "\n".join(f"{m.role}: {m.content or ''}" for m in messages[:-1])
        return self.service.Request.model_validate(fields)

    def content(self, output: dict[str, Any]) -> str:
        """The assistant message: the answer, then the sources it cites."""
        answer = str(output.get(ANSWER) or "")
        cited = output.get("citations") or []
        if not cited:
            return answer
        titles = {p.get("id"): p.get("title") for p in output.get("passages") or []
                  if isinstance(p, dict)}
        sources = [f"{titles[c]} ({c})" if titles.get(c) else str(c) for c in cited]
        return f"{answer}\n\nSources: {'; '.join(sources)}"


def chat_graph(service: GraphService) -> ChatGraph:
    """``service`` as a chat model, or :class:`UnfitGraph` saying why it cannot be one."""
    spec = service.graph.spec
    if ANSWER not in spec.outputs:
        raise UnfitGraph(f"graph {spec.name!r} has no {ANSWER!r} output to reply with")
    fields = service.Request.model_fields
    questions = [name for name in fields if name != HISTORY]
    if len(questions) != 1 or not _accepts(fields[questions[0]].annotation, "text"):
        raise UnfitGraph(f"graph {spec.name!r} takes inputs {', '.join(fields)}; a chat "
                         "model needs one text input (and optionally 'history')")
    takes_history = HISTORY in fields
    if takes_history and not _accepts(fields[HISTORY].annotation, "text"):
        raise UnfitGraph(f"graph {spec.name!r}'s 'history' input does not take text, so it "
                         "cannot be given the earlier turns")
    return ChatGraph(service=service, question=questions[0], takes_history=takes_history)


def usage(trace: list[dict[str, Any]]) -> Usage:
    """Token counts summed over a run's trace events."""
    prompt = sum(int(event.get("tokens_in") or 0) for event in trace)
    completion = sum(int(event.get("tokens_out") or 0) for event in trace)
    return Usage(prompt_tokens=prompt, completion_tokens=completion,
                 total_tokens=prompt + completion)

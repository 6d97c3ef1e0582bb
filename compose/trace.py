"""Per-node trace events: what ran, on what, what came out, what it cost.

Traces are plain JSON so they can live in LangGraph state (and its checkpoints), be written
as JSONL, and be summed into evaluation tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from compose.corpus import write_jsonl
from compose.runtime import CallStats


class TraceEvent(CallStats):
    """One node run: the module's cost (``CallStats``) plus what went in and came out."""

    node: str
    module: str
    input: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] = Field(default_factory=dict)
    latency_s: float = 0.0
    route: str | None = None


class TraceTotals(BaseModel):
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    generator_s: float = 0.0
    retriever_s: float = 0.0
    latency_s: float = 0.0
    node_latency_s: dict[str, float] = Field(default_factory=dict)


def totals(events: Iterable[dict[str, Any] | TraceEvent]) -> TraceTotals:
    result = TraceTotals()
    for raw in events:
        event = raw if isinstance(raw, TraceEvent) else TraceEvent.model_validate(raw)
        result.llm_calls += event.llm_calls
        result.tokens_in += event.tokens_in
        result.tokens_out += event.tokens_out
        result.generator_s += event.generator_s
        result.retriever_s += event.retriever_s
        result.latency_s += event.latency_s
        result.node_latency_s[event.node] = (
            result.node_latency_s.get(event.node, 0.0) + event.latency_s
        )
    return result


def write_trace(path: str | Path, events: Iterable[dict[str, Any] | TraceEvent]) -> None:
    write_jsonl(path, events)

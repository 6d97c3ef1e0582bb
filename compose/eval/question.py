"""One benchmark question through a graph: its evaluation record, scored.

The same function serves the local runner and every Ray worker, so a question gives the same
record wherever it ran. A failing graph does not raise: the error is recorded (the summary
table counts errors) and the record is scored like any other.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic_core import to_jsonable_python

from compose.api import ComposeGraph
from compose.corpus import QAItem
from compose.eval.metrics import compute_metrics
from compose.eval.record import EvalRecord
from compose.registry import MODULES
from compose.text import is_abstention
from compose.trace import totals


def retrieval_calls(trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trace events of modules that declare ``retrieves``: their passages are what the
    run retrieved."""
    return [e for e in trace if _retrieves(e.get("module"))]


def _retrieves(module: object) -> bool:
    return isinstance(module, str) and module in MODULES and MODULES.get(module).retrieves


def retrieved_ids(trace: list[dict[str, Any]], k: int) -> list[str] | None:
    """The first ``k`` passages of every retrieval call in the run, pooled in order; None
    when nothing was retrieved at all (recall is then not applicable)."""
    calls = retrieval_calls(trace)
    if not calls:
        return None
    ids: list[str] = []
    for event in calls:
        for passage in (event.get("output") or {}).get("passages", [])[:k]:
            if passage["id"] not in ids:
                ids.append(passage["id"])
    return ids


def retrieved_passages(trace: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every passage any retrieval call returned in the run, by id."""
    return {p["id"]: p for event in retrieval_calls(trace)
            for p in (event.get("output") or {}).get("passages", [])}


def judge_grounding(graph: ComposeGraph, question: str, answer: str,
                    passages: list[dict[str, Any]]) -> tuple[bool, int]:
    """The verify module's verdict on a final answer; returns (grounded, LLM calls made)."""
    from compose.modules.verify import Verify

    ctx = graph.runtime.context()
    verdict = Verify(mode="llm")({"question": question, "answer": answer,
                                  "passages": passages}, ctx)
    return bool(verdict.grounded), ctx.stats.llm_calls


def graph_outputs(graph: ComposeGraph, state: dict[str, Any]) -> dict[str, Any]:
    """The graph's declared outputs besides the answer and citations, as plain JSON, so
    graph-specific metrics (interpretations, tool calls) can score them later."""
    skip = {"answer", "citations"}
    outputs: dict[str, Any] = to_jsonable_python(
        {name: state.get(name) for name in graph.spec.outputs
         if name not in skip and name in state}, fallback=str)
    return outputs


def evaluate_one(graph: ComposeGraph, item: QAItem, recall_k: int, metric_names: list[str],
                 judge: bool = False) -> dict[str, Any]:
    """The record of one question as its results-file line, plus its ``trace`` (the runner
    writes that apart, or not at all). Plain JSON, as a Ray worker sends it back."""
    started = time.perf_counter()
    error: str | None = None
    state: dict[str, Any] = {}
    trace: list[dict[str, Any]] = []
    try:
        state = graph.invoke({"question": item.question})
        trace = state.get("trace", [])
    except Exception as exc:  # recorded, never dropped: the table counts errors
        error = f"{type(exc).__name__}: {exc}"
    prediction = str(state.get("answer") or "")
    citations: list[str] = state.get("citations") or []
    abstained = bool(state.get("abstained")) or is_abstention(prediction)
    pool = retrieved_passages(trace)
    cited = [pool[c] for c in citations if c in pool]
    optional: dict[str, Any] = {}  # keys a record holds only when they apply
    if judge and not abstained and not error:
        optional["judge_grounded"], optional["judge_llm_calls"] = judge_grounding(
            graph, item.question, prediction, cited)
    if "qa_pairs" in item.meta:
        optional["qa_pairs"] = item.meta["qa_pairs"]
    spent = totals(trace)
    record = EvalRecord(
        id=item.id, question=item.question, answers=item.answers, gold_ids=item.gold_ids,
        error=error, prediction=prediction, outputs=graph_outputs(graph, state),
        citations=citations, abstained=abstained,
        retrieved_ids=retrieved_ids(trace, recall_k),
        cited_texts=[f"{p['title']} {p['text']}" for p in cited],
        **optional,
        llm_calls=spent.llm_calls,
        tokens_in=spent.tokens_in,
        tokens_out=spent.tokens_out,
        generator_s=round(spent.generator_s, 4),
        retriever_s=round(spent.retriever_s, 4),
        node_latency_s={k: round(v, 4) for k, v in spent.node_latency_s.items()},
        module_calls=len(trace),
        cache_hits=sum(1 for e in trace if e.get("cache_hit")),
        wall_s=round(time.perf_counter() - started, 4),
    )
    record.metrics = compute_metrics(record, metric_names)
    return {**record.to_json(), "trace": trace}

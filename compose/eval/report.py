"""Turn per-question eval records into the summary table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import mean
from typing import Any

from pydantic import BaseModel, Field
from rich.table import Table

from compose.eval.metrics import AGGREGATES
from compose.eval.record import EvalRecord, as_record


class EvalSummary(BaseModel):
    questions: int
    errors: int
    cited: int = Field(0, description="Answers citing at least one passage: citation "
                       "precision averages over these alone, so it is shown beside them.")
    metrics: dict[str, float | None]
    llm_calls: float
    tokens_in: float
    tokens_out: float
    wall_s: float
    cache_hit_rate: float
    node_share: dict[str, float] = Field(description="Share of node time per node.")


def _mean(values: list[float]) -> float | None:
    return mean(values) if values else None


def summarize(records: Sequence[EvalRecord | Mapping[str, Any]]) -> EvalSummary:
    """Means per question over ``records`` (or their JSON form), run-level metrics included."""
    rows = [as_record(r) for r in records]
    names = sorted({name for r in rows for name in r.metrics})
    metrics = {
        name: _mean([value for r in rows if (value := r.metrics.get(name)) is not None])
        for name in names
    }
    for name, (needs, aggregate) in AGGREGATES.items():
        if needs in names:
            metrics[name] = aggregate(rows)
    node_time: dict[str, float] = {}
    for row in rows:
        for node, seconds in row.node_latency_s.items():
            node_time[node] = node_time.get(node, 0.0) + seconds
    total_node = sum(node_time.values()) or 1.0
    calls = sum(r.module_calls for r in rows) or 1
    return EvalSummary(
        questions=len(rows),
        errors=sum(1 for r in rows if r.error),
        cited=sum(1 for r in rows if r.citations),
        metrics=metrics,
        llm_calls=_mean([r.llm_calls for r in rows]) or 0.0,
        tokens_in=_mean([r.tokens_in for r in rows]) or 0.0,
        tokens_out=_mean([r.tokens_out for r in rows]) or 0.0,
        wall_s=_mean([r.wall_s for r in rows]) or 0.0,
        cache_hit_rate=sum(r.cache_hits for r in rows) / calls,
        node_share={node: t / total_node for node, t in sorted(node_time.items())},
    )


def summary_table(title: str, summary: EvalSummary) -> Table:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("questions", str(summary.questions))
    table.add_row("errors", str(summary.errors))
    for name, value in summary.metrics.items():
        shown = "n/a" if value is None else f"{value:.3f}"
        if name == "citation_precision":
            shown += f" (cited {summary.cited}/{summary.questions})"
        table.add_row(name, shown)
    table.add_row("LLM calls / question", f"{summary.llm_calls:.2f}")
    table.add_row("tokens in / question", f"{summary.tokens_in:.1f}")
    table.add_row("tokens out / question", f"{summary.tokens_out:.1f}")
    table.add_row("wall s / question", f"{summary.wall_s:.2f}")
    table.add_row("cache hits / module call", f"{summary.cache_hit_rate:.2f}")
    for node, share in summary.node_share.items():
        table.add_row(f"latency share: {node}", f"{share:.1%}")
    return table

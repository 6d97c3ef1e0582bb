"""Turn per-question eval records into the summary table."""

from __future__ import annotations

from statistics import mean

from pydantic import BaseModel, Field
from rich.table import Table

from compose.eval.metrics import AGGREGATES


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


def summarize(records: list[dict]) -> EvalSummary:
    names = sorted({name for r in records for name in r.get("metrics", {})})
    metrics = {
        name: _mean([r["metrics"][name] for r in records
                     if r["metrics"].get(name) is not None])
        for name in names
    }
    for name, (needs, aggregate) in sorted(AGGREGATES.items()):
        if needs in names:
            metrics[name] = aggregate(records)
    node_time: dict[str, float] = {}
    for record in records:
        for node, seconds in record.get("node_latency_s", {}).items():
            node_time[node] = node_time.get(node, 0.0) + seconds
    total_node = sum(node_time.values()) or 1.0
    calls = sum(r.get("module_calls", 0) for r in records) or 1
    return EvalSummary(
        questions=len(records),
        errors=sum(1 for r in records if r.get("error")),
        cited=sum(1 for r in records if r.get("citations")),
        metrics=metrics,
        llm_calls=_mean([r.get("llm_calls", 0) for r in records]) or 0.0,
        tokens_in=_mean([r.get("tokens_in", 0) for r in records]) or 0.0,
        tokens_out=_mean([r.get("tokens_out", 0) for r in records]) or 0.0,
        wall_s=_mean([r.get("wall_s", 0.0) for r in records]) or 0.0,
        cache_hit_rate=sum(r.get("cache_hits", 0) for r in records) / calls,
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

"""Answer and retrieval metrics, registered by name so a run config can list them as strings.

The scoring follows the published conventions (SQuAD normalisation, the HotpotQA official F1
with its yes/no rule, ALCE's STR-EM for ASQA) so numbers are comparable with reported ones;
the text comparisons themselves are ``compose.text``'s. Each registered metric scores one
:class:`~compose.eval.record.EvalRecord` (``prediction``, ``answers``, ``retrieved_ids``,
``gold_ids``, optionally ``qa_pairs``...) and returns ``None`` when the record carries nothing
to score against, so such records are left out of averages rather than counted as zeros.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from compose.eval.record import EvalRecord, as_record
from compose.plugins import Registry
from compose.text import answer_in, exact_match, normalize_answer, token_f1

MetricFn = Callable[[EvalRecord], float | None]
AggregateFn = Callable[[list[EvalRecord]], float | None]

BUILTIN_METRICS: dict[str, str] = {
    "n_interpretations": "compose.eval.ambiguity_metrics",
    "grounded_precision": "compose.eval.ambiguity_metrics",
    "grounded_precision_verify": "compose.eval.ambiguity_metrics",
    "str_em_answers": "compose.eval.ambiguity_metrics",
    "accuracy": "compose.eval.choice_metrics",
    "label_rate": "compose.eval.choice_metrics",
    "tool_calls": "compose.eval.choice_metrics",
    "agent_steps": "compose.eval.choice_metrics",
}
"""The benchmark-family metrics: name -> the file registering it, imported when first named."""
BUILTIN_AGGREGATES: dict[str, str] = {
    "macro_f1": "compose.eval.choice_metrics",
    "tool_call_validity": "compose.eval.choice_metrics",
}

METRICS: Registry[MetricFn] = Registry("metric", "composerag.metrics", BUILTIN_METRICS)
AGGREGATES: Registry[tuple[str, AggregateFn]] = Registry(
    "aggregate metric", None, BUILTIN_AGGREGATES, identity=lambda entry: entry[1])
"""Run-level metrics, as (the record metric they need, the function). Plugins add them with
``register_aggregate`` in the file their ``composerag.metrics`` entry point loads."""

_RECALL_NAME = re.compile(r"recall@(\d+)")


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Decorator: add a record-level metric under ``name``; a name cannot be taken twice."""
    return METRICS.register(name)


def register_aggregate(name: str, needs: str) -> Callable[[AggregateFn], AggregateFn]:
    """Decorator: add a metric over a whole run (e.g. macro-F1), which no per-question
    average can express. It is reported for runs whose records carry the record-level
    metric ``needs``, so a benchmark opts in by declaring that metric."""

    def decorator(fn: AggregateFn) -> AggregateFn:
        if name in METRICS:
            raise ValueError(f"metric name {name!r} is already registered")
        AGGREGATES.add(name, (needs, fn))
        return fn

    return decorator


def recall_at_k(retrieved_ids: Sequence[str], gold_ids: Iterable[str], k: int) -> float | None:
    """Fraction of the distinct gold ids found in the first ``k`` retrieved; None without gold."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    gold = set(gold_ids)
    if not gold:
        return None
    return len(gold & set(retrieved_ids[:k])) / len(gold)


def str_em(prediction: str, qa_pairs: Sequence[Mapping[str, Any]]) -> float:
    """ASQA STR-EM: fraction of disambiguations whose any short answer occurs in the output.

    Matching is a substring test after normalisation, as in ALCE. A short answer that
    normalises to nothing (e.g. "The") would match every output, so it is ignored.
    """
    if not qa_pairs:
        return 0.0
    hits = sum(any(answer_in(short, prediction) for short in pair.get("short_answers") or [])
               for pair in qa_pairs)
    return hits / len(qa_pairs)


@register_metric("em")
def _em_metric(record: EvalRecord) -> float | None:
    return exact_match(record.prediction, record.answers) if record.answers else None


@register_metric("f1")
def _f1_metric(record: EvalRecord) -> float | None:
    return token_f1(record.prediction, record.answers) if record.answers else None


def recall_at(k: int) -> MetricFn:
    """Return the ``recall@k`` metric, registering it on first use so any cut-off can be named."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    name = f"recall@{k}"
    if name not in METRICS:

        def metric(record: EvalRecord) -> float | None:
            if record.retrieved_ids is None:  # the graph never retrieved
                return None
            return recall_at_k(record.retrieved_ids, record.gold_ids, k)

        metric.__name__ = f"recall_at_{k}"
        register_metric(name)(metric)
    return METRICS.get(name)


recall_at(5)


@register_metric("str_em")
def _str_em_metric(record: EvalRecord) -> float | None:
    return str_em(record.prediction, record.qa_pairs) if record.qa_pairs else None


def get_metric(name: str) -> MetricFn:
    """Look a metric up by name; ``recall@K`` for any K is created on demand."""
    if name not in METRICS and (match := _RECALL_NAME.fullmatch(name)):
        return recall_at(int(match.group(1)))
    return METRICS.get(name)


def compute_metrics(record: EvalRecord | Mapping[str, Any],
                    names: Iterable[str]) -> dict[str, float | None]:
    """Score one record (or its JSON form) with each named metric."""
    scored = as_record(record)
    return {name: get_metric(name)(scored) for name in names}


@register_metric("ungrounded")
def _ungrounded_metric(record: EvalRecord) -> float | None:
    """1 when a (non-abstained) answer occurs in none of the passages it cites; no citation
    counts as ungrounded. Needs ``cited_texts``."""
    if record.outputs.get("interpretations") is not None:
        return None  # a listing of readings: scored per reading by grounded_precision
    if record.abstained or record.cited_texts is None:
        return None
    if not normalize_answer(record.prediction):
        return None
    return 0.0 if any(answer_in(record.prediction, text)
                      for text in record.cited_texts) else 1.0


@register_metric("ungrounded_judge")
def _ungrounded_judge_metric(record: EvalRecord) -> float | None:
    """The ``verify`` module's verdict on the final answer and its cited passages."""
    if record.judge_grounded is None or record.abstained:
        return None
    return 0.0 if record.judge_grounded else 1.0


@register_metric("citation_precision")
def _citation_precision_metric(record: EvalRecord) -> float | None:
    gold = set(record.gold_ids)
    if not record.citations or not gold:
        return None
    return sum(1 for c in record.citations if c in gold) / len(record.citations)


@register_metric("abstained")
def _abstained_metric(record: EvalRecord) -> float | None:
    return None if record.abstained is None else float(record.abstained)

"""Metrics for closed-label benchmarks (PubMedQA's yes/no/maybe) and for tool-using agents.

- ``accuracy``: the prediction's label (the choice it names, "Yes." -> yes) equals the gold
  label; None when the gold answer is not a label, so free-text benchmarks are unaffected.
- ``label_rate``: the prediction names a label at all (else accuracy counts it wrong).
- ``macro_f1`` (run level): the mean over the gold labels' F1, as PubMedQA reports it. A
  prediction that names no label is a miss for its gold class and a false positive for none.
- ``tool_calls`` / ``agent_steps``: per question, the tool calls the agent attempted and the
  steps it took (thought + action each), read from the graph's ``steps`` output; None for
  graphs without one.
- ``tool_call_validity`` (run level): calls that parsed, named an allowed tool and passed
  argument validation, over all attempted calls (an unparsable step counts as a failed call).

Usage::

    composerag eval medorch --dataset pubmedqa:../shared/data/pubmedqa/pqal_dev500.json
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compose.eval.metrics import register_aggregate, register_metric
from compose.eval.record import EvalRecord
from compose.text import choice_label


def _gold_label(record: EvalRecord) -> str | None:
    return choice_label(record.answers[0]) if record.answers else None


@register_metric("accuracy")
def _accuracy(record: EvalRecord) -> float | None:
    gold = _gold_label(record)
    if gold is None:
        return None
    return float(choice_label(record.prediction) == gold)


@register_metric("label_rate")
def _label_rate(record: EvalRecord) -> float | None:
    """Whether the prediction names a label at all: tells a model that answers off-format
    (scored wrong by ``accuracy``) from one that picks the wrong label."""
    if _gold_label(record) is None:
        return None
    return float(choice_label(record.prediction) is not None)


def macro_f1(pairs: Sequence[tuple[str, str | None]]) -> float | None:
    """Mean F1 over the gold labels present; ``pairs`` are (gold, predicted label or None)."""
    classes = sorted({gold for gold, _ in pairs})
    if not classes:
        return None
    scores = []
    for label in classes:
        tp = sum(1 for g, p in pairs if g == label and p == label)
        fp = sum(1 for g, p in pairs if g != label and p == label)
        fn = sum(1 for g, p in pairs if g == label and p != label)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


@register_aggregate("macro_f1", needs="accuracy")
def _macro_f1(records: list[EvalRecord]) -> float | None:
    pairs = [(gold, choice_label(r.prediction)) for r in records
             if (gold := _gold_label(r)) is not None]
    return macro_f1(pairs)


def _steps(record: EvalRecord) -> list[dict[str, Any]] | None:
    steps = record.outputs.get("steps")
    return steps if isinstance(steps, list) else None


def _calls(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Steps that attempted a tool call (``valid_call`` is None only on a final answer)."""
    return [s for s in steps if s.get("valid_call") is not None]


@register_metric("tool_calls")
def _tool_calls(record: EvalRecord) -> float | None:
    steps = _steps(record)
    return None if steps is None else float(len(_calls(steps)))


@register_metric("agent_steps")
def _agent_steps(record: EvalRecord) -> float | None:
    steps = _steps(record)
    return None if steps is None else float(len(steps))


@register_aggregate("tool_call_validity", needs="tool_calls")
def _tool_call_validity(records: list[EvalRecord]) -> float | None:
    calls = [c for r in records for c in _calls(_steps(r) or [])]
    if not calls:
        return None
    return sum(1 for c in calls if c["valid_call"]) / len(calls)

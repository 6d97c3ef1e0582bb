"""Metrics for ambiguous questions (ASQA): how many readings a graph returns and how well
each is grounded.

Graphs that answer with interpretations (``verdict``, ``dtv``) declare an
``interpretations`` output, which the runner stores under ``record["outputs"]``: a list of
``{question, answer, passage: {id, title, text}, verified}``. A graph without it (``naive_rag``)
is scored as one interpretation - its final answer with its cited passages - so the same
columns compare every graph. Each metric returns None where there is nothing to score.

- ``n_interpretations``: readings returned (0 for an abstention).
- ``grounded_precision``: share of readings whose answer string occurs in its own passage.
- ``grounded_precision_verify``: share of readings the ``verify`` module judged grounded
  (the graph's ``judge`` node, or the runner's ``--judge`` for a single answer).
- ``str_em_answers``: STR-EM over the readings' answers only. The final text of ``verdict``
  and ``dtv`` also shows each reading's question, which can contain a gold short answer and
  so lift plain ``str_em``; this variant cannot be lifted that way.
"""

from __future__ import annotations

from typing import Any

from compose.eval.metrics import register_metric, str_em
from compose.eval.record import EvalRecord
from compose.text import answer_in


def interpretations_of(record: EvalRecord) -> list[dict[str, Any]] | None:
    """The graph's interpretations, or None when the graph does not produce any."""
    items = record.outputs.get("interpretations")
    return None if items is None else list(items)


@register_metric("n_interpretations")
def n_interpretations(record: EvalRecord) -> float | None:
    items = interpretations_of(record)
    if items is not None:
        return float(len(items))
    if record.error:
        return None
    return 0.0 if record.abstained else 1.0


@register_metric("grounded_precision")
def grounded_precision(record: EvalRecord) -> float | None:
    items = interpretations_of(record)
    if items is None:
        if record.abstained or record.cited_texts is None:
            return None
        return float(any(answer_in(record.prediction, t) for t in record.cited_texts))
    if not items:
        return None
    grounded = sum(answer_in(i["answer"], f"{i['passage'].get('title', '')} "
                                          f"{i['passage']['text']}") for i in items)
    return grounded / len(items)


@register_metric("grounded_precision_verify")
def grounded_precision_verify(record: EvalRecord) -> float | None:
    items = interpretations_of(record)
    if items is None:
        verdict = record.judge_grounded
        return None if verdict is None or record.abstained else float(verdict)
    judged = [i["verified"] for i in items if i.get("verified") is not None]
    return sum(judged) / len(judged) if judged else None


@register_metric("str_em_answers")
def str_em_answers(record: EvalRecord) -> float | None:
    if not record.qa_pairs:
        return None
    items = interpretations_of(record)
    text = record.prediction if items is None else " ; ".join(i["answer"] for i in items)
    return str_em(text, record.qa_pairs)

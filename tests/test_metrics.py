"""Metric values checked against hand-computed expectations."""

from __future__ import annotations

import pytest

from compose.eval.metrics import (
    METRICS,
    compute_metrics,
    recall_at,
    recall_at_k,
    register_metric,
    str_em,
)


def test_recall_at_k_cut_and_missing_gold() -> None:
    retrieved = ["d1", "g1", "d2", "g2", "d3"]
    assert recall_at_k(retrieved, ["g1", "g2"], 2) == 0.5
    assert recall_at_k(retrieved, ["g1", "g2"], 4) == 1.0
    assert recall_at_k(retrieved, ["g1", "g2", "g3"], 5) == pytest.approx(2 / 3)
    assert recall_at_k(retrieved, ["g1", "g1"], 2) == 1.0
    assert recall_at_k(retrieved, [], 5) is None
    with pytest.raises(ValueError):
        recall_at_k(retrieved, ["g1"], 0)


def test_str_em_counts_covered_disambiguations() -> None:
    qa_pairs = [
        {"short_answers": ["Ali Daei", "Daei"]},
        {"short_answers": ["Josef Bican"]},
        {"short_answers": ["Christine Sinclair"]},
    ]
    output = "Ali Daei scored 109 men's international goals; Sinclair has 187."
    assert str_em(output, qa_pairs) == pytest.approx(1 / 3)
    assert str_em("Josef Bican and Christine Sinclair, and Daei.", qa_pairs) == 1.0
    # An answer that normalises to nothing must not match every output.
    assert str_em("anything", [{"short_answers": ["The"]}]) == 0.0
    assert str_em("anything", []) == 0.0


def test_registry_and_compute_metrics() -> None:
    assert {"em", "f1", "recall@5", "str_em"} <= set(METRICS.names())
    record = {
        "prediction": "The Rush",
        "answers": ["Rush"],
        "retrieved_ids": ["a", "b", "c"],
        "gold_ids": ["c", "z"],
    }
    scores = compute_metrics(record, ["em", "f1", "recall@5", "recall@2", "str_em"])
    assert scores == {"em": 1.0, "f1": 1.0, "recall@5": 0.5, "recall@2": 0.0, "str_em": None}
    assert "recall@2" in METRICS
    assert recall_at(2) is METRICS.get("recall@2")

    empty = {"prediction": "x", "answers": [], "retrieved_ids": [], "gold_ids": []}
    assert compute_metrics(empty, ["em", "f1", "recall@5"]) == {
        "em": None,
        "f1": None,
        "recall@5": None,
    }
    with pytest.raises(KeyError, match="unknown metric"):
        compute_metrics(record, ["bleu"])


def test_register_metric_rejects_a_taken_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_metric("em")(lambda record: 0.0)


def test_grounding_metrics():
    from compose.eval.metrics import compute_metrics

    record = {"prediction": "Caskel", "citations": ["a", "b"], "gold_ids": ["a", "z"],
              "cited_texts": ["Ilse Ranneth was born in the port town of Caskel."],
              "abstained": False, "judge_grounded": False}
    scores = compute_metrics(record, ["ungrounded", "ungrounded_judge", "citation_precision",
                                      "abstained"])
    assert scores == {"ungrounded": 0.0, "ungrounded_judge": 1.0, "citation_precision": 0.5,
                      "abstained": 0.0}
    uncited = {**record, "citations": [], "cited_texts": []}
    assert compute_metrics(uncited, ["ungrounded", "citation_precision"]) == {
        "ungrounded": 1.0, "citation_precision": None}
    abstained = {**record, "prediction": "unknown", "abstained": True}
    assert compute_metrics(abstained, ["ungrounded", "ungrounded_judge", "abstained"]) == {
        "ungrounded": None, "ungrounded_judge": None, "abstained": 1.0}

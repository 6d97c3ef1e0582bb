"""Metric values checked against hand-computed expectations."""

from __future__ import annotations

import pytest

from compose.eval.metrics import (
    METRICS,
    compute_metrics,
    exact_match,
    normalize_answer,
    recall_at,
    recall_at_k,
    register_metric,
    str_em,
    token_f1,
)


def test_normalize_strips_case_punctuation_articles_and_spaces() -> None:
    assert normalize_answer("  The Eiffel   Tower!! ") == "eiffel tower"
    assert normalize_answer("An apple, a day.") == "apple day"
    # Articles only as whole words: "theater" and "another" keep their letters.
    assert normalize_answer("Another theater") == "another theater"


def test_exact_match_takes_best_answer() -> None:
    assert exact_match("the Rush.", ["Rush"]) == 1.0
    assert exact_match("Rush band", ["Rush", "Yes"]) == 0.0
    assert exact_match("yes", ["no", "Yes"]) == 1.0
    assert exact_match("anything", []) == 0.0


def test_token_f1_partial_overlap() -> None:
    # pred tokens: barack obama president (3); gold: barack hussein obama (3); common 2.
    # precision = recall = 2/3, so F1 = 2/3.
    assert token_f1("Barack Obama, president", ["Barack Hussein Obama"]) == pytest.approx(2 / 3)
    # pred: new york (2); gold: new york city (3); P = 1, R = 2/3, F1 = 0.8.
    assert token_f1("the New York", ["New York City"]) == pytest.approx(0.8)
    assert token_f1("Paris", ["London"]) == 0.0
    # Max over answers.
    assert token_f1("New York", ["Boston", "New York"]) == 1.0


def test_token_f1_yes_no_rule() -> None:
    # A bare yes/no/noanswer on either side must match exactly. Without the rule
    # "yes it is" vs "yes" would score 2 * (1/3 * 1) / (1/3 + 1) = 0.5.
    assert token_f1("yes it is", ["yes"]) == 0.0
    assert token_f1("yes", ["yes it is"]) == 0.0
    # Neither side special: ordinary overlap, P = 1/3, R = 1/2, F1 = 0.4.
    assert token_f1("yes it is", ["yes sir"]) == pytest.approx(0.4)
    assert token_f1("yes", ["no"]) == 0.0
    assert token_f1("no", ["no way"]) == 0.0
    assert token_f1("noanswer", ["no answer"]) == 0.0
    assert token_f1("No.", ["no"]) == 1.0


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
    assert {"em", "f1", "recall@5", "str_em"} <= set(METRICS)
    record = {
        "prediction": "The Rush",
        "answers": ["Rush"],
        "retrieved_ids": ["a", "b", "c"],
        "gold_ids": ["c", "z"],
    }
    scores = compute_metrics(record, ["em", "f1", "recall@5", "recall@2", "str_em"])
    assert scores == {"em": 1.0, "f1": 1.0, "recall@5": 0.5, "recall@2": 0.0, "str_em": None}
    assert "recall@2" in METRICS
    assert recall_at(2) is METRICS["recall@2"]

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

"""PubMedQA-style metrics: label accuracy, macro-F1, tool-call validity and steps per question,
as the eval runner and report compute them."""

from __future__ import annotations

import pytest

from compose.eval.choice_metrics import macro_f1
from compose.eval.metrics import AGGREGATES, compute_metrics
from compose.eval.report import summarize
from compose.text import choice_label
from tests.conftest import SHARED_DATA

NAMES = ["accuracy", "label_rate", "tool_calls", "agent_steps"]


def record(gold, prediction, steps=None):
    rec = {"answers": [gold], "prediction": prediction,
           "outputs": {} if steps is None else {"steps": steps}}
    rec["metrics"] = compute_metrics(rec, NAMES)
    return rec


def step(valid):
    return {"valid_call": valid}


FINAL = {"valid_call": None, "answer": "yes"}


@pytest.mark.parametrize(("text", "label"), [
    ("yes", "yes"), ("Yes.", "yes"), ("NO", "no"), ("Maybe, the data are mixed", "maybe"),
    ("probably", None), ("", None), ("The answer is yes", None),
])
def test_choice_label(text, label):
    assert choice_label(text) == label


def test_accuracy_only_scores_label_benchmarks():
    assert record("yes", "Yes.")["metrics"]["accuracy"] == 1.0
    assert record("maybe", "no")["metrics"]["accuracy"] == 0.0
    assert record("Paris", "Paris")["metrics"]["accuracy"] is None  # free-text gold
    assert record("yes", "The index is adequate")["metrics"]["label_rate"] == 0.0
    assert record("yes", "no")["metrics"]["label_rate"] == 1.0
    assert record("Paris", "Paris")["metrics"]["label_rate"] is None


def test_macro_f1_worked_example():
    # yes: tp 1, fn 1 -> 2/3; no: tp 1, fp 1 -> 2/3; maybe: tp 0 -> 0; mean 4/9
    pairs = [("yes", "yes"), ("yes", "no"), ("no", "no"), ("maybe", None)]
    assert macro_f1(pairs) == pytest.approx(4 / 9)
    assert macro_f1([("yes", "yes"), ("no", "no")]) == 1.0
    assert macro_f1([]) is None


def test_tool_metrics_and_run_level_validity():
    records = [
        record("yes", "yes", [step(True), step(False), FINAL]),
        record("no", "yes", [step(True), step(True), step(True), FINAL]),
        record("maybe", "", [step(False)]),   # budget spent, unreadable final
    ]
    assert [r["metrics"]["tool_calls"] for r in records] == [2.0, 3.0, 1.0]
    assert [r["metrics"]["agent_steps"] for r in records] == [3.0, 4.0, 1.0]
    summary = summarize(records)
    assert summary.metrics["tool_call_validity"] == pytest.approx(4 / 6)
    assert summary.metrics["agent_steps"] == pytest.approx(8 / 3)
    assert summary.metrics["accuracy"] == pytest.approx(1 / 3)
    # yes: tp1 fp1 -> 2/3; no: fn1 -> 0; maybe: fn1 -> 0
    assert summary.metrics["macro_f1"] == pytest.approx(2 / 9)


def test_graphs_without_steps_report_no_tool_metrics():
    records = [record("yes", "yes"), record("no", "no")]
    assert records[0]["metrics"]["tool_calls"] is None
    summary = summarize(records)
    assert summary.metrics["tool_call_validity"] is None
    assert summary.metrics["macro_f1"] == 1.0
    assert AGGREGATES.get("macro_f1")[0] == "accuracy"


def test_pubmedqa_loader_declares_the_metrics():
    path = SHARED_DATA / "pubmedqa" / "pqal_dev500.json"
    if not path.is_file():
        pytest.skip(f"PubMedQA file not found at {path}")
    from compose.corpora.benchmarks import load_pubmedqa

    data = load_pubmedqa(path)
    assert set(NAMES) <= set(data.metrics)
    assert {q.answers[0] for q in data.questions} <= {"yes", "no", "maybe"}

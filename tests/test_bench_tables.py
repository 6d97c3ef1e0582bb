"""The bench scripts whose tables the MoI figures are reported with: ``compare_runs.py``
(paired comparison of evaluation runs) and ``moi_signals.py`` (do the passes find the gold
passages?)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compare_runs():
    return load_script("compare_runs")


@pytest.fixture(scope="module")
def moi_signals():
    return load_script("moi_signals")


def record(qid: str, em: float, f1: float, **extra) -> dict:
    return {"id": qid, "metrics": {"em": em, "f1": f1}, "llm_calls": 1, "tokens_in": 100,
            "wall_s": 1.0, **extra}


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_rows_are_paired_on_common_questions(tmp_path: Path, compare_runs) -> None:
    base = write(tmp_path / "base.jsonl", [record("a", 1, 1), record("b", 0, 0.5),
                                          record("c", 0, 0)])
    # The second run is still in progress: only a and b are compared.
    other = write(tmp_path / "other.jsonl", [
        record("b", 1, 1, llm_calls=6, tokens_in=600,
               outputs={"tokens_prompted": 500, "tokens_evaluated": 300}),
        record("a", 0, 0, error="boom"),
    ])
    title, rows = compare_runs.compare([("base", compare_runs.load(base)),
                                        ("other", compare_runs.load(other))])
    assert title.startswith("2 questions")
    by_column = dict(zip(compare_runs.COLUMNS, rows[1], strict=True))
    assert by_column["errors"] == "1"
    assert by_column["EM"] == "0.500"
    assert by_column["ΔEM [95% CI]"].startswith("+0.000")
    assert by_column["ΔF1 [95% CI]"].startswith("-0.250")
    assert by_column["F1 won/lost"] == "1/1"
    # a: 100 prompted, all evaluated; b: 600 prompted, 200 of them reused.
    assert by_column["tokens prompted/q"] == "350"
    assert by_column["tokens evaluated/q"] == "250"
    assert dict(zip(compare_runs.COLUMNS, rows[0], strict=True))["F1 won/lost"] == "0/0"


def test_bootstrap_interval_brackets_the_mean(compare_runs) -> None:
    diffs = np.array([1.0] * 30 + [0.0] * 70)
    low, high = compare_runs.paired_interval(diffs)
    assert low < 0.3 < high
    assert low > 0.15 and high < 0.45


def test_disjoint_runs_are_refused(tmp_path: Path, compare_runs) -> None:
    one = compare_runs.load(write(tmp_path / "1.jsonl", [record("a", 1, 1)]))
    two = compare_runs.load(write(tmp_path / "2.jsonl", [record("b", 1, 1)]))
    with pytest.raises(SystemExit, match="share no question"):
        compare_runs.compare([("one", one), ("two", two)])


def test_pairwise_auc(moi_signals) -> None:
    assert moi_signals.pairwise_auc([3.0, 1.0, 2.0], [True, False, False]) == 1.0
    assert moi_signals.pairwise_auc([1.0, 1.0], [True, False]) == 0.5
    assert moi_signals.pairwise_auc([1.0, 2.0], [True, True]) is None


def test_oracle_utilities_rank_the_passage_that_answers_first(moi_signals) -> None:
    """Only the order with the gold passage in the strongest slot answers right: the oracle
    signal ranks it first; a constant outcome (no signal) ranks nothing."""
    record = {
        "retrieved_ids": ["b", "g", "a"], "gold_ids": ["g"], "answers": ["Caskel"],
        "outputs": {"trials": [
            {"order": ["g", "a", "b"], "answer": "Caskel", "mean_logprob": -0.5},
            {"order": ["a", "b", "g"], "answer": "Velmora", "mean_logprob": -0.5},
            {"order": ["b", "g", "a"], "answer": "Velmora", "mean_logprob": -0.5},
        ]},
    }
    aucs, varying = moi_signals.question_aucs(record, np.array([1.0, 0.5, 0.0]), 0.1)
    assert aucs["oracle"] == 1.0 and aucs["retriever"] == 0.5  # g is ranked 2nd of 3
    assert aucs["logprob"] == 0.5 and varying == {"oracle", "consistency"}

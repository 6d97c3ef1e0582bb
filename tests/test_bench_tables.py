"""The bench scripts whose tables the MoI figures are reported with: ``compare_runs.py``
(paired comparison of evaluation runs, a wrapper of ``compose.eval.compare``, tested in
``test_eval_compare.py``) and ``moi_signals.py`` (do the passes find the gold passages?)."""

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


def test_compare_runs_prints_the_package_comparison(tmp_path: Path, compare_runs,
                                                     capsys) -> None:
    """The script is ``composerag eval compare`` under its README name: same table, same
    refusals (an exit status of 1 and the reason, not a traceback)."""
    lines = [{"id": qid, "question": qid, "metrics": {"em": em, "f1": em}, "wall_s": 1.0}
             for qid, em in (("a", 1.0), ("b", 0.0))]
    base = tmp_path / "base.jsonl"
    base.write_text("".join(json.dumps(r) + "\n" for r in lines))
    better = tmp_path / "better.jsonl"
    better.write_text("".join(json.dumps({**r, "metrics": {"em": 1.0, "f1": 1.0}}) + "\n"
                              for r in lines))
    assert compare_runs.main([f"retrieval order={base}", f"MoI M=k={better}",
                              "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("2 questions present in every run")
    assert "| MoI M=k | 0 | 1.000 | +0.500 [+0.000, +1.000] |" in printed
    assert compare_runs.main([str(base), str(tmp_path / "missing.jsonl")]) == 1
    assert "error: no results file at" in capsys.readouterr().err


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

"""``bench/compare_runs.py``: the paired comparison the MoI figures are reported with."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "compare_runs.py"


@pytest.fixture(scope="module")
def compare_runs():
    spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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

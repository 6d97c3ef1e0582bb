"""The benchmark loaders, run on the real development files in ``../shared/data``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from compose.corpora.benchmarks import (
    BENCHMARKS,
    load_2wiki,
    load_asqa,
    load_benchmark,
    load_hotpotqa,
    load_musique,
    load_pubmedqa,
)
from compose.corpus import BenchmarkData

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CASES = [
    # (spec name, loader, file, expected questions)
    ("hotpotqa", load_hotpotqa, "hotpotqa/dev200.jsonl", 200),
    ("2wikimultihopqa", load_2wiki, "2wikimultihopqa/dev164.jsonl", 164),
    ("musique", load_musique, "musique/dev200.jsonl", 200),
    ("asqa", load_asqa, "asqa/dev300.json", 300),
    ("pubmedqa", load_pubmedqa, "pubmedqa/pqal_dev500.json", 500),
]

_cache: dict[str, BenchmarkData] = {}


def _data_file(relative: str) -> Path:
    path = DATA / relative
    if not path.is_file():
        pytest.skip(f"benchmark file {path} is absent (shared data not available here)")
    return path


def _load(loader: Callable[[Path], BenchmarkData], relative: str) -> BenchmarkData:
    if relative not in _cache:
        _cache[relative] = loader(_data_file(relative))
    return _cache[relative]


@pytest.mark.parametrize(("name", "loader", "relative", "count"), CASES, ids=[c[0] for c in CASES])
def test_loader_shape(name: str, loader, relative: str, count: int) -> None:
    data = _load(loader, relative)
    assert data.name == name
    assert len(data.questions) == count
    assert len({q.id for q in data.questions}) == count
    assert all(q.question.strip() for q in data.questions)
    assert all(q.answers and all(a.strip() for a in q.answers) for q in data.questions)

    ids = [p.id for p in data.corpus]
    assert len(set(ids)) == len(ids)
    assert len({(p.title, p.text) for p in data.corpus}) == len(data.corpus)
    assert all(p.text.strip() and p.text == p.text.strip() for p in data.corpus)

    corpus_ids = set(ids)
    for question in data.questions:
        assert set(question.gold_ids) <= corpus_ids, question.id
    if name == "asqa":
        # Some ASQA rows come with no knowledge passages; most do.
        with_gold = sum(bool(q.gold_ids) for q in data.questions)
        assert with_gold >= 0.9 * count
    else:
        assert all(q.gold_ids for q in data.questions)


@pytest.mark.parametrize(("name", "loader", "relative", "count"), CASES, ids=[c[0] for c in CASES])
def test_ids_are_stable_across_loads(name: str, loader, relative: str, count: int) -> None:
    first = _load(loader, relative)
    second = loader(_data_file(relative))
    assert [p.id for p in first.corpus] == [p.id for p in second.corpus]
    assert [q.gold_ids for q in first.questions] == [q.gold_ids for q in second.questions]


def test_hotpotqa_pools_all_rows() -> None:
    data = _load(load_hotpotqa, "hotpotqa/dev200.jsonl")
    # 200 rows x 10 paragraphs, de-duplicated across rows: measured 1971.
    assert len(data.corpus) == 1971
    assert all(len(q.gold_ids) == 2 for q in data.questions)
    by_id = {p.id: p for p in data.corpus}
    first = data.questions[0]
    assert {by_id[g].title for g in first.gold_ids} == {"Nobody's Hero", "Neil Peart"}
    assert first.answers == ["Rush"]


def test_musique_answers_include_aliases() -> None:
    data = _load(load_musique, "musique/dev200.jsonl")
    assert any(len(q.answers) > 1 for q in data.questions)
    assert all(2 <= len(q.gold_ids) <= 4 for q in data.questions)


def test_asqa_keeps_qa_pairs_and_pubmedqa_labels() -> None:
    asqa = _load(load_asqa, "asqa/dev300.json")
    for question in asqa.questions:
        pairs = question.meta["qa_pairs"]
        assert pairs
        shorts = {a.strip() for pair in pairs for a in pair["short_answers"] if a.strip()}
        assert set(question.answers) == shorts

    pubmed = _load(load_pubmedqa, "pubmedqa/pqal_dev500.json")
    assert {a for q in pubmed.questions for a in q.answers} == {"yes", "no", "maybe"}
    assert len(pubmed.corpus) == 500
    by_id = {p.id: p for p in pubmed.corpus}
    for question in pubmed.questions:
        assert by_id[question.gold_ids[0]].title == f"PMID {question.id}"
        assert question.meta["long_answer"]
        assert question.meta["labels"]


def test_load_benchmark_spec() -> None:
    path = _data_file("2wikimultihopqa/dev164.jsonl")
    data = load_benchmark(f"2wiki:{path}")
    assert data.name == "2wikimultihopqa"
    assert len(data.questions) == 164
    assert set(BENCHMARKS.names()) >= {"hotpotqa", "2wikimultihopqa", "2wiki", "musique", "asqa",
                                       "pubmedqa"}


def test_load_benchmark_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="known: .*hotpotqa"):
        load_benchmark(f"squad:{tmp_path / 'x.jsonl'}")
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_benchmark(f"hotpotqa:{missing}")
    with pytest.raises(ValueError, match="NAME:PATH"):
        load_benchmark("hotpotqa")

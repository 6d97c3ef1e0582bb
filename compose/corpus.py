"""Corpus and question-set records shared by retrieval, loaders and evaluation.

A corpus is JSONL of ``{id, title, text}``; a question set is JSONL of :class:`QAItem`.
The corpus hash is what an index manifest records, so an index is never silently reused
over a different corpus.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, Field


class Passage(BaseModel):
    """One retrievable unit of text."""

    id: str
    title: str = ""
    text: str


class ScoredPassage(Passage):
    """A passage returned by a retriever, with its score and 1-based rank."""

    score: float = 0.0
    rank: int = 0


class QAItem(BaseModel):
    """A benchmark question with its gold answers and the ids of its gold passages."""

    id: str
    question: str
    answers: list[str] = Field(default_factory=list)
    gold_ids: list[str] = Field(default_factory=list)
    meta: dict = Field(default_factory=dict)


class BenchmarkData(BaseModel):
    """What a benchmark loader returns: a pooled corpus and the questions over it."""

    name: str
    corpus: list[Passage]
    questions: list[QAItem]
    metrics: list[str] = Field(
        default_factory=list,
        description="Metric names this benchmark adds to the default ones (e.g. accuracy).",
    )


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Yield JSON objects from a JSONL file, naming the file and line on a parse error."""
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from exc


def load_corpus(path: str | Path) -> list[Passage]:
    """Read a corpus JSONL file; ids must be unique because citations refer to them."""
    passages = [Passage.model_validate(row) for row in read_jsonl(path)]
    seen: set[str] = set()
    for passage in passages:
        if passage.id in seen:
            raise ValueError(f"{path}: duplicate passage id {passage.id!r}")
        seen.add(passage.id)
    return passages


def load_questions(path: str | Path) -> list[QAItem]:
    return [QAItem.model_validate(row) for row in read_jsonl(path)]


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            data = record.model_dump() if isinstance(record, BaseModel) else record
            handle.write(json.dumps(data, ensure_ascii=False) + "\n")


def corpus_hash(passages: Iterable[Passage]) -> str:
    """A content hash of the corpus, independent of file formatting."""
    digest = hashlib.sha256()
    for passage in passages:
        digest.update(json.dumps([passage.id, passage.title, passage.text]).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]

"""Corpus and question-set records shared by retrieval, loaders and evaluation.

A corpus is JSONL of ``{id, title, text}``; a question set is JSONL of :class:`QAItem`.
The corpus hash is what an index manifest records, so an index is never silently reused
over a different corpus.

Every line that is not a valid record (not UTF-8, not JSON, not an object, a field missing or
of the wrong type, a repeated passage id) is a :class:`BadLine` naming ``file:line`` and the
reason, raised as :class:`BadLineError` by default. A corpus may instead be read with
``skip_bad_lines``, which keeps the good lines and returns the bad ones to report: one broken
line in a million-passage export should not cost the whole build, but must not pass unseen.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator


class Passage(BaseModel):
    """One retrievable unit of text."""

    id: str
    title: str = ""
    text: str

    @field_validator("id", "title", "text")
    @classmethod
    def unicode_text(cls, value: str) -> str:
        """JSON's ``\\ud800`` escapes decode to lone surrogates, which are not text: writing
        the passage as UTF-8 (into an index, a trace) would fail far from the corpus line."""
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            bad = value[error.start]
            raise ValueError(f"holds a lone surrogate ({bad!r}), which is not Unicode "
                             "text") from None
        return value


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
    meta: dict[str, Any] = Field(default_factory=dict)


class BenchmarkData(BaseModel):
    """What a benchmark loader returns: a pooled corpus and the questions over it."""

    name: str
    corpus: list[Passage]
    questions: list[QAItem]
    metrics: list[str] = Field(
        default_factory=list,
        description="Metric names this benchmark adds to the default ones (e.g. accuracy).",
    )


Record = TypeVar("Record", bound=BaseModel)
JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "true or false",
              int: "a number", float: "a number", type(None): "null"}


@dataclass(frozen=True)
class BadLine:
    """One line of a JSONL file that is not a valid record, and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class BadLineError(ValueError):
    """A JSONL line that is not a valid record; the message is ``file:line: reason``."""

    def __init__(self, bad: BadLine) -> None:
        super().__init__(str(bad))
        self.bad = bad


class CorpusRead(NamedTuple):
    """The passages of a corpus file and, when bad lines were skipped, those lines."""

    passages: list[Passage]
    bad_lines: list[BadLine]


def describe_validation(error: ValidationError) -> str:
    """Pydantic's errors in one line, each naming the field it concerns."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "missing":
            parts.append(f"missing field {where!r}")
        else:
            message = item["msg"].removeprefix("Value error, ")  # our validators' own words
            parts.append(f"field {where!r}: {message}" if where else message)
    return "; ".join(parts)


def parse_line(raw: bytes) -> dict[str, Any] | str:
    """The JSON object on one line, or why there is none."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"not UTF-8 text (byte {error.start + 1} is {raw[error.start:error.start + 1]!r})"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return f"invalid JSON ({error.msg} at column {error.colno})"
    except (ValueError, RecursionError) as error:  # a 5,000-digit number, [[[[...]]]]
        return f"invalid JSON ({error})"
    if not isinstance(value, dict):
        return f"expected a JSON object, found {JSON_TYPES.get(type(value), 'something else')}"
    return value


def jsonl_values(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """(line number, object or :class:`BadLine`) for each non-blank line. Read as bytes, so
    that an undecodable line is one bad line with its number, not an error for the file."""
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if line_no == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if not raw.strip():
                continue
            value = parse_line(raw.rstrip(b"\r\n"))
            yield line_no, value if isinstance(value, dict) else BadLine(str(path), line_no,
                                                                         value)


def parse_records(path: str | Path,
                  model: type[Record]) -> Iterator[tuple[int, Record | BadLine]]:
    """(line number, record or :class:`BadLine`) for each non-blank line."""
    for line_no, value in jsonl_values(path):
        if isinstance(value, BadLine):
            yield line_no, value
            continue
        try:
            yield line_no, model.model_validate(value)
        except ValidationError as error:
            yield line_no, BadLine(str(path), line_no, describe_validation(error))


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield JSON objects from a JSONL file; :class:`BadLineError` (file:line) on the first line
    that is not one."""
    for _, value in jsonl_values(path):
        if isinstance(value, BadLine):
            raise BadLineError(value)
        yield value


def read_corpus(path: str | Path, *, skip_bad_lines: bool = False) -> CorpusRead:
    """Every passage of a corpus JSONL file. Ids must be unique because citations refer to
    them, so a repeated id is a bad line (naming the line it first appeared on). Strict by
    default: the first bad line raises :class:`BadLineError`; with ``skip_bad_lines`` the bad
    lines are returned instead, for the caller to report, and the rest kept."""
    passages: list[Passage] = []
    bad_lines: list[BadLine] = []
    first_seen: dict[str, int] = {}
    for line_no, item in parse_records(path, Passage):
        if isinstance(item, Passage) and item.id in first_seen:
            item = BadLine(str(path), line_no, f"duplicate passage id {item.id!r} (first on "
                                               f"line {first_seen[item.id]})")
        if isinstance(item, BadLine):
            if not skip_bad_lines:
                raise BadLineError(item)
            bad_lines.append(item)
            continue
        first_seen[item.id] = line_no
        passages.append(item)
    return CorpusRead(passages, bad_lines)


def load_corpus(path: str | Path) -> list[Passage]:
    """Read a corpus JSONL file strictly (see :func:`read_corpus`)."""
    return read_corpus(path).passages


def load_questions(path: str | Path) -> list[QAItem]:
    """Read a question-set JSONL file; :class:`BadLineError` (file:line) on a bad line."""
    questions = []
    for _, item in parse_records(path, QAItem):
        if isinstance(item, BadLine):
            raise BadLineError(item)
        questions.append(item)
    return questions


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, Any]]) -> None:
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

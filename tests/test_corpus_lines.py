"""Corpus lines: every bad line a ``file:line: reason`` error, or with ``skip_bad_lines`` a
reported line and a build from the rest; a fuzz over arbitrary lines that only ever sees the
project's error. Index builds here use given vectors (no encoder), over real FAISS and BM25."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compose.corpus import (
    BadLine,
    BadLineError,
    Passage,
    load_corpus,
    load_questions,
    read_corpus,
    read_jsonl,
    write_jsonl,
)
from compose.retrieval.encoder import passage_text
from compose.retrieval.index import EmptyCorpusError, LoadedIndex, bm25_tokenize, build_index

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
GOOD = '{"id": "p1", "title": "Boats", "text": "Boats float."}'


def corpus_file(directory: Path, lines: list[str | bytes]) -> Path:
    path = directory / f"{uuid.uuid4().hex[:8]}.jsonl"
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n"
                              for line in lines))
    return path


def unit_vectors(n: int) -> np.ndarray:
    vectors = np.random.default_rng(n).normal(size=(n, 8)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize(("line", "reason"), [
    ('{"id": "p2", "title": "no text"}', "missing field 'text'"),
    ('{"id": 2, "text": "x"}', "field 'id': Input should be a valid string"),
    ('{"id": "p2", "text": ', "invalid JSON (Expecting value at column 22)"),
    ('["p2", "x"]', "expected a JSON object, found an array"),
    ('"just text"', "expected a JSON object, found a string"),
    (b'{"id": "p2", "text": "caf\xe9"}', "not UTF-8 text (byte 26 is b'\\xe9')"),
    ('{"id": "p2", "text": "\\ud800"}', "lone surrogate"),
    ('{"id": "p1", "text": "again"}', "duplicate passage id 'p1' (first on line 1)"),
    ("[" * 100_000, "invalid JSON"),
    ('{"id": "p2", "text": "x", "n": ' + "9" * 5000 + "}", "invalid JSON"),
])
def test_a_bad_line_is_a_file_line_error(tmp_path, line, reason):
    path = corpus_file(tmp_path, [GOOD, "", line])
    with pytest.raises(BadLineError) as caught:
        load_corpus(path)
    assert str(caught.value).startswith(f"{path}:3: ")
    assert reason in str(caught.value)
    assert caught.value.bad == BadLine(str(path), 3, caught.value.bad.reason)


def test_skipping_reports_each_bad_line_and_keeps_the_rest(tmp_path):
    path = corpus_file(tmp_path, [GOOD, '{"id": "p2"}', "not json", "",
                                  '{"id": "p3", "text": "Stones sink."}', GOOD])
    read = read_corpus(path, skip_bad_lines=True)
    assert [p.id for p in read.passages] == ["p1", "p3"]
    assert [(bad.line, bad.reason.split(" (")[0]) for bad in read.bad_lines] == [
        (2, "missing field 'text'"), (3, "invalid JSON"), (6, "duplicate passage id 'p1'")]
    assert [str(bad).split(": ")[0] for bad in read.bad_lines] == [
        f"{path}:2", f"{path}:3", f"{path}:6"]
    manifest = build_index(read.passages, tmp_path / "idx", vectors=unit_vectors(2),
                           show_progress=False)
    assert manifest.count == 2
    assert [p.id for p in LoadedIndex(tmp_path / "idx").passages] == ["p1", "p3"]


def test_strict_is_the_default(tmp_path):
    path = corpus_file(tmp_path, [GOOD, "{}"])
    with pytest.raises(BadLineError, match=":2: missing field 'id'"):
        read_corpus(path)


def test_a_byte_order_mark_and_crlf_endings_are_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\r\n\r\n")
    assert load_corpus(path) == [Passage(id="p1", title="Boats", text="Boats float.")]


def test_questions_and_plain_jsonl_name_the_line_too(tmp_path):
    path = corpus_file(tmp_path, ['{"id": "q1", "question": "Why?"}', '{"id": "q2"}', b"\xff"])
    with pytest.raises(BadLineError, match=r":2: missing field 'question'"):
        load_questions(path)
    with pytest.raises(BadLineError, match=r":3: not UTF-8 text"):
        list(read_jsonl(path))


def test_a_passage_with_a_lone_surrogate_cannot_be_made_in_python_either():
    with pytest.raises(ValueError, match="lone surrogate"):
        Passage(id="p", text="bad \udc80")


# fuzz: arbitrary lines give passages or BadLine, nothing else

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "title", "text", "x"]) | st.text(max_size=4), inner, max_size=4),
    max_leaves=8,
)
SURROGATES = st.text(st.characters(categories=["Cs", "Ll", "Zs"]), max_size=8)
PASSAGE = st.fixed_dictionaries(
    {"id": st.text(max_size=6), "text": st.text(max_size=20) | SURROGATES},
    optional={"title": st.text(max_size=8) | st.integers()})


def mutated(line: bytes, draw) -> bytes:
    """A valid line with a few bytes changed, cut or inserted."""
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(line)))
        blob = draw(st.binary(max_size=3))
        line = line[:at] + blob + line[at + draw(st.integers(0, 3)):]
    return line


@st.composite
def lines(draw) -> bytes:
    kind = draw(st.sampled_from(["passage", "passage", "mutated", "json", "bytes", "blank"]))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "blank":
        return b"  \t"
    line = json.dumps(draw(PASSAGE), ensure_ascii=draw(st.booleans())).encode("utf-8",
                                                                               "surrogatepass")
    return mutated(line, draw) if kind == "mutated" else line


def expected_lines(content: bytes) -> list[int]:
    """Numbers of the lines a reader must account for: every line with content."""
    rows = content.split(b"\n")
    rows[0] = rows[0].removeprefix(b"\xef\xbb\xbf")
    return [n for n, row in enumerate(rows, start=1) if row.strip()]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus-fuzz")


def check_lines(fuzz_dir: Path, rows: list[bytes]) -> None:
    """Strict reading gives passages or BadLineError; skipping accounts for every line; what
    is kept writes and reads back unchanged."""
    path = fuzz_dir / "fuzz.jsonl"
    content = b"\n".join(rows) + b"\n"
    path.write_bytes(content)
    try:
        strict = load_corpus(path)
    except BadLineError as error:
        assert str(error).startswith(f"{path}:")
        strict = None
    read = read_corpus(path, skip_bad_lines=True)
    numbers = expected_lines(content)
    assert len(read.passages) + len(read.bad_lines) == len(numbers)
    assert {bad.line for bad in read.bad_lines} <= set(numbers)
    assert all(str(bad).startswith(f"{path}:{bad.line}: ") and bad.reason
               for bad in read.bad_lines)
    if strict is not None:
        assert strict == read.passages and not read.bad_lines
    copy = fuzz_dir / "copy.jsonl"
    write_jsonl(copy, read.passages)  # what an index build writes must read back the same
    assert load_corpus(copy) == read.passages


@FUZZ
@given(st.lists(lines(), min_size=1, max_size=12))
def test_fuzzed_corpus_lines_give_only_project_errors(fuzz_dir, rows):
    check_lines(fuzz_dir, rows)


@pytest.mark.slow
@settings(FUZZ, max_examples=3000)
@given(st.lists(lines(), min_size=1, max_size=12))
def test_fuzzed_corpus_lines_give_only_project_errors_many(fuzz_dir, rows):
    check_lines(fuzz_dir, rows)


@settings(FUZZ, max_examples=25)
@given(st.lists(lines(), min_size=1, max_size=8))
def test_an_index_builds_from_whatever_lines_survive(fuzz_dir, rows):
    path = fuzz_dir / "build.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    kept = read_corpus(path, skip_bad_lines=True).passages
    if not kept:
        return
    out = fuzz_dir / f"idx-{uuid.uuid4().hex[:8]}"
    try:
        build_index(kept, out, vectors=unit_vectors(len(kept)), show_progress=False)
    except EmptyCorpusError:
        assert not any(bm25_tokenize([passage_text(p.title, p.text) for p in kept]))
        return
    assert LoadedIndex(out).passages == kept


def test_a_corpus_without_an_indexable_word_is_refused_before_embedding(tmp_path):
    with pytest.raises(EmptyCorpusError, match="none of the 2 passages has a word"):
        build_index([Passage(id="a", text="the"), Passage(id="b", text="x")], tmp_path / "i",
                    encoder="not-loaded", show_progress=False)
    assert not (tmp_path / "i").exists()


def test_index_build_skip_bad_lines_reports_each_and_builds_from_the_rest(tmp_path):
    from typer.testing import CliRunner

    from compose.cli.main import app

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "title": "A", "text": "Alpha lamps burn kelp oil."}\n'
                      '{"id": "b", "title": "B"}\n'
                      '{"id": "c", "title": "C", "text": "Gamma bridges span rivers."}\n')
    strict = CliRunner().invoke(app, ["index", "build", str(corpus), str(tmp_path / "strict")])
    assert strict.exit_code == 1 and "c.jsonl:2" in strict.output
    result = CliRunner().invoke(app, ["index", "build", str(corpus), str(tmp_path / "idx"),
                                      "--skip-bad-lines"])
    assert result.exit_code == 0, result.output
    assert "c.jsonl:2" in result.output and "2 passages" in result.output

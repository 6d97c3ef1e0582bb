"""Indexes that verify themselves: file hashes in the manifest, one error for every damage, the
encoder never taken from a manifest path, and a tampering fuzz over two real indexes.

Two real 6-passage indexes (MiniLM embeddings, FAISS flat, BM25) are built once for the module;
every tampering case works on a fresh copy of index A, with B as the source of swapped files
(same passage count and dimension, other corpus: the case that used to answer silently from
B). The oracle for an index that is accepted is A's own results in all three modes, so a
silently wrong retrieval cannot pass as a refusal or as a success.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compose.config import RetrieverConfig
from compose.corpus import Passage
from compose.retrieval import integrity
from compose.retrieval.encoder import DEFAULT_ENCODER, resolve_encoder
from compose.retrieval.errors import IndexDamagedError
from compose.retrieval.index import IndexMismatchError, LoadedIndex, build_index
from compose.retrieval.index_output import IndexOutputError
from compose.retrieval.integrity import VERIFIED_FILE, is_cache_file
from compose.retrieval.retriever import Retriever, open_retriever
from compose.retrieval.store import ensure_index

A_TEXTS = ["The lighthouse at Caskel was built by Mira Oduya in 1871.",
           "Kelp oil lamps burned in every harbour house.",
           "The salt harvest festival is held each August.",
           "A ferry crosses the Vell strait twice a day.",
           "The copper mine at Dunmarrow closed in 1930.",
           "The glacier above Tarn retreats a metre a year."]
B_TEXTS = ["Bananas ripen faster beside apples.",
           "The violin has four strings tuned in fifths.",
           "Chess openings are catalogued by ECO codes.",
           "Volcanic soil is rich in minerals.",
           "A marathon is 42.195 kilometres long.",
           "Honey never spoils if kept sealed."]
QUERIES = ["Who built the lighthouse?", "kelp oil lamp", "ferry across the strait"]
MODES = ("dense", "bm25", "hybrid")
DELETE = object()
FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def passages(prefix: str, texts: list[str]) -> list[Passage]:
    return [Passage(id=f"{prefix}{i}", title=f"{prefix.upper()} {i}", text=text)
            for i, text in enumerate(texts)]


def results(index: LoadedIndex) -> list[list[tuple[str, float]]]:
    retriever = Retriever(index)
    return [[(hit.id, round(hit.score, 4)) for hit in retriever.search(q, k=3, mode=mode)]
            for mode in MODES for q in QUERIES]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory) -> tuple[Path, Path, list]:
    """Index A, index B (same size, other corpus) and A's results, the oracle."""
    root = tmp_path_factory.mktemp("pair")
    build_index(passages("a", A_TEXTS), root / "A", show_progress=False)
    build_index(passages("b", B_TEXTS), root / "B", show_progress=False)
    return root / "A", root / "B", results(LoadedIndex(root / "A"))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("copies")


def fresh_copy(source: Path, scratch: Path) -> Path:
    """A copy of ``source`` to tamper with (hypothesis examples cannot use ``tmp_path``)."""
    copy = scratch / uuid.uuid4().hex[:10]
    shutil.copytree(source, copy)
    return copy


def index_files(index: Path) -> list[str]:
    return sorted(p.relative_to(index).as_posix() for p in index.rglob("*")
                  if p.is_file() and p.name != VERIFIED_FILE)


def assert_refused(index: Path, file: str | None = None) -> IndexDamagedError:
    """Opening is refused with the project's error, naming the file and the rebuild."""
    with pytest.raises(IndexDamagedError) as caught:
        LoadedIndex(index)
    message = str(caught.value)
    assert f"composerag index build CORPUS {index}" in message
    assert caught.value.file in message
    if file is not None:
        assert caught.value.file == file, message
    return caught.value


def refused_or_right(index: Path, expected: list) -> str:
    """'refused' with the project error, or 'right' when every mode retrieves exactly what the
    pristine index does; anything else (a library exception, other results) fails."""
    try:
        opened = LoadedIndex(index)
    except IndexDamagedError as error:
        assert f"composerag index build CORPUS {index}" in str(error)
        return "refused"
    assert results(opened) == expected, "accepted, but retrieves something else"
    return "right"


# what the manifest records, and how opening uses it


def test_manifest_records_the_sha256_of_every_file(indexes):
    a, _, _ = indexes
    manifest = json.loads((a / "manifest.json").read_text())
    on_disk = [name for name in index_files(a) if name != "manifest.json"]
    assert sorted(manifest["files"]) == on_disk
    assert {"passages.jsonl", "dense.faiss"} <= set(on_disk)
    assert any(name.startswith("bm25/") for name in on_disk)
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((a / name).read_bytes()).hexdigest() == digest


def test_reopening_does_not_hash_again_until_a_file_changes(indexes, scratch, monkeypatch):
    copy = fresh_copy(indexes[0], scratch)
    hashed: list[str] = []
    real = integrity.file_sha256
    monkeypatch.setattr(integrity, "file_sha256", lambda p: hashed.append(p.name) or real(p))
    LoadedIndex(copy)
    first = len(hashed)
    assert first == len(json.loads((copy / "manifest.json").read_text())["files"])
    assert (copy / VERIFIED_FILE).is_file()
    LoadedIndex(copy)
    assert len(hashed) == first  # the cache answered for every file
    (copy / "passages.jsonl").write_bytes((copy / "passages.jsonl").read_bytes())  # same bytes
    LoadedIndex(copy)
    assert hashed[first:] == ["passages.jsonl"]  # rewritten: hashed again, found right


def test_a_damaged_verification_cache_only_costs_a_rehash(indexes, scratch):
    copy = fresh_copy(indexes[0], scratch)
    LoadedIndex(copy)
    (copy / VERIFIED_FILE).write_bytes(b"\x00garbage")
    assert results(LoadedIndex(copy)) == indexes[2]
    (copy / "dense.faiss").write_bytes((indexes[1] / "dense.faiss").read_bytes())
    assert_refused(copy, "dense.faiss")


def test_a_read_only_index_opens_without_a_cache(indexes, scratch):
    copy = fresh_copy(indexes[0], scratch)
    copy.chmod(0o555)
    try:
        assert results(LoadedIndex(copy)) == indexes[2]
        if os.geteuid() != 0:  # root writes anyway
            assert not any(is_cache_file(p.name) for p in copy.iterdir())
    finally:
        copy.chmod(0o755)


# the cases of issue 16, one by one


@pytest.mark.parametrize("name", ["dense.faiss", "bm25"])
def test_a_file_swapped_in_from_an_index_of_the_same_size_is_refused(indexes, scratch, name):
    a, b, _ = indexes
    copy = fresh_copy(a, scratch)
    if name == "bm25":
        shutil.rmtree(copy / name)
        shutil.copytree(b / name, copy / name)
    else:
        shutil.copy2(b / name, copy / name)
    error = assert_refused(copy)
    assert error.file.startswith(name) and "copied from another index" in str(error)


def test_truncated_faiss_and_deleted_bm25_files_are_refused(indexes, scratch):
    copy = fresh_copy(indexes[0], scratch)
    data = (copy / "dense.faiss").read_bytes()
    (copy / "dense.faiss").write_bytes(data[: len(data) // 2])
    assert_refused(copy, "dense.faiss")
    copy = fresh_copy(indexes[0], scratch)
    shutil.rmtree(copy / "bm25")
    assert "is missing" in str(assert_refused(copy))


@pytest.mark.parametrize(("key", "value", "says"), [
    ("count", 7, "says 7 passages"),
    ("dimension", 385, "says dimension 385"),
    ("encoder", "no-such-encoder", "not a known encoder"),
    ("encoder", "../../../../etc", "never a path read from the manifest"),
    ("index_type", "hnsw", "hnsw_m"),
    ("hnsw_m", 16, "hnsw_m 16 does not fit index_type 'flat'"),
    ("corpus_hash", "0" * 16, "says corpus hash 0000000000000000, passages.jsonl hashes to"),
    ("format_version", 1, "older composerag"),
    ("format_version", 3, "format 3"),
    ("count", DELETE, "missing field 'count'"),
    ("files", {}, "records no hash"),
    ("surprise", 1, "surprise"),
])
def test_a_manifest_that_disagrees_or_is_malformed_is_refused(indexes, scratch, key, value,
                                                              says):
    copy = fresh_copy(indexes[0], scratch)
    manifest = json.loads((copy / "manifest.json").read_text())
    if value is DELETE:
        del manifest[key]
    else:
        manifest[key] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert says in str(assert_refused(copy, "manifest.json"))


def test_a_manifest_path_is_never_loaded_as_the_encoder(indexes, scratch, monkeypatch):
    copy = fresh_copy(indexes[0], scratch)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["encoder"] = "../../../../etc"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    resolved: list[str] = []
    monkeypatch.setattr("compose.retrieval.encoder.resolve_encoder", resolved.append)
    with pytest.raises(IndexDamagedError, match="encoder '../../../../etc'"):
        open_retriever(RetrieverConfig(index=str(copy)))
    assert resolved == []


def test_an_index_built_from_an_encoder_directory_needs_that_directory(indexes, scratch):
    """The packaged MiniLM, named by its directory: refused from the manifest alone; opened
    when the caller passes the directory, which is then what embeds the queries. (Not queried
    here: a second name for the same model would load and export it a second time.)"""
    directory = resolve_encoder(DEFAULT_ENCODER)
    a, _, _ = indexes
    vectors = LoadedIndex(a).dense.reconstruct_n(0, len(A_TEXTS))
    built = scratch / "by-directory"
    build_index(passages("a", A_TEXTS), built, encoder=str(directory), vectors=vectors,
                show_progress=False)
    assert "encoder_dir" in str(assert_refused(built, "manifest.json"))
    retriever = open_retriever(RetrieverConfig(index=str(built)), encoder_dir=directory)
    assert retriever.index.encoder == str(directory.resolve())
    assert resolve_encoder(retriever.index.encoder) == directory.resolve()
    with pytest.raises(IndexMismatchError, match="packaged encoder"):
        LoadedIndex(a, encoder_dir=directory)
    with pytest.raises(FileNotFoundError, match="encoder directory"):
        LoadedIndex(built, encoder_dir=scratch / "nowhere")


def test_manifest_missing_beside_index_files_is_damage_not_absence(indexes, scratch, tmp_path):
    copy = fresh_copy(indexes[0], scratch)
    (copy / "manifest.json").unlink()
    assert "is missing" in str(assert_refused(copy, "manifest.json"))
    with pytest.raises(FileNotFoundError, match="composerag index build"):
        LoadedIndex(tmp_path)


def test_the_store_rebuilds_a_damaged_or_old_index(tmp_path, capsys):
    corpus = passages("s", ["boats float", "stones sink"])
    path = ensure_index(corpus, "tiny", root=tmp_path, show_progress=False)
    (path / "dense.faiss").write_bytes(b"garbage")
    assert ensure_index(corpus, "tiny", root=tmp_path, show_progress=False) == path
    assert "dense.faiss differs" in capsys.readouterr().err
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    ensure_index(corpus, "tiny", root=tmp_path, show_progress=False)
    assert "older composerag" in capsys.readouterr().err
    assert LoadedIndex(path).manifest.count == 2


def test_an_output_path_under_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(IndexOutputError, match="notes.txt is a file, not a directory"):
        build_index(passages("x", ["one"]), tmp_path / "notes.txt" / "idx",
                    vectors=np.full((1, 4), 0.5, dtype=np.float32), show_progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# tampering fuzz: every case refused with the project error, 0 silently wrong retrievals


def truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


def swap(b: Path, name: str) -> Callable[[Path], None]:
    def apply(copy: Path) -> None:
        if (copy / name).is_dir():
            shutil.rmtree(copy / name)
            shutil.copytree(b / name, copy / name)
        else:
            shutil.copy2(b / name, copy / name)
    return apply


def tampering_cases(a: Path, b: Path) -> list[tuple[str, Callable[[Path], None]]]:
    """Truncation, bit flips, deletion and swaps from B for every file; swaps of several."""
    cases: list[tuple[str, Callable[[Path], None]]] = []
    for name in index_files(a):
        size = (a / name).stat().st_size
        for cut in sorted({0, size // 2, size - 1}):
            cases.append((f"truncate {name} to {cut}", lambda d, n=name, c=cut: truncate(d / n, c)))
        for offset in sorted({0, size // 3, size // 2, size - 2}):
            cases.append((f"flip {name}@{offset}", lambda d, n=name, o=offset: flip(d / n, o)))
        cases.append((f"delete {name}", lambda d, n=name: (d / n).unlink()))
        if (a / name).read_bytes() != (b / name).read_bytes():  # bm25 params may agree
            cases.append((f"swap {name}", swap(b, name)))
    cases.append(("delete bm25/", lambda d: shutil.rmtree(d / "bm25")))
    for group in (["bm25"], ["dense.faiss", "bm25"], ["dense.faiss", "passages.jsonl"],
                  ["manifest.json", "dense.faiss"], ["manifest.json", "bm25"],
                  ["passages.jsonl", "bm25"]):
        cases.append((f"swap {'+'.join(group)}",
                      lambda d, g=group: [swap(b, name)(d) for name in g]))
    return cases


def test_every_systematic_tampering_case_is_refused(indexes, scratch):
    a, b, expected = indexes
    outcomes = {}
    for name, tamper in tampering_cases(a, b):
        copy = fresh_copy(a, scratch)
        LoadedIndex(copy)  # a warm verification cache must not hide the change
        tamper(copy)
        outcomes[name] = refused_or_right(copy, expected)
        shutil.rmtree(copy)
    assert len(outcomes) >= 70
    assert {name for name, outcome in outcomes.items() if outcome != "refused"} == set()


def damage_one_file(indexes, scratch, data) -> None:
    """Truncate, flip a bit, overwrite or append bytes in one file; opening must refuse, or for
    the manifest (which no hash covers) read it as the same manifest, e.g. after a space."""
    a, _, expected = indexes
    name = data.draw(st.sampled_from(index_files(a)), label="file")
    content = (a / name).read_bytes()
    size = len(content)
    action = data.draw(st.sampled_from(["truncate", "flip", "overwrite", "append"]))
    if action == "truncate":
        changed = content[: data.draw(st.integers(0, size - 1))]
    elif action == "flip":
        at, bit = data.draw(st.integers(0, size - 1)), data.draw(st.integers(0, 7))
        changed = content[:at] + bytes([content[at] ^ (1 << bit)]) + content[at + 1:]
    else:
        blob = data.draw(st.binary(min_size=1, max_size=64))
        at = size if action == "append" else data.draw(st.integers(0, size - 1))
        changed = content[:at] + blob + content[at + len(blob):]
    if changed == content:
        return
    copy = fresh_copy(a, scratch)
    (copy / name).write_bytes(changed)
    if name == "manifest.json":
        refused_or_right(copy, expected)
    else:
        assert_refused(copy)
    shutil.rmtree(copy)


MANIFEST_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 400), st.floats(allow_nan=False),
    st.text(max_size=12), st.sampled_from(["hnsw", "flat", "../../etc", "0" * 16, "0" * 64]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=6), st.text(max_size=6),
                                                          max_size=2))


@FUZZ
@given(data=st.data())
def test_random_manifest_edits_are_refused_or_harmless(indexes, scratch, data):
    a, _, expected = indexes
    copy = fresh_copy(a, scratch)
    manifest = json.loads((copy / "manifest.json").read_text())
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        key = data.draw(st.sampled_from([*manifest, "files.entry", "extra"]), label="key")
        value = data.draw(MANIFEST_VALUES, label="value")
        if key == "files.entry" and isinstance(manifest.get("files"), dict) and manifest["files"]:
            name = data.draw(st.sampled_from(sorted(manifest["files"])))
            manifest["files"][name] = value
        elif data.draw(st.booleans(), label="delete") and key in manifest:
            del manifest[key]
        else:
            manifest[key] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    refused_or_right(copy, expected)
    shutil.rmtree(copy)


@FUZZ
@given(data=st.data())
def test_random_byte_damage_to_any_file_is_refused(indexes, scratch, data):
    damage_one_file(indexes, scratch, data)


@pytest.mark.slow
@settings(FUZZ, max_examples=1500)
@given(data=st.data())
def test_random_byte_damage_to_any_file_is_refused_many(indexes, scratch, data):
    damage_one_file(indexes, scratch, data)

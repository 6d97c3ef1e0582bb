"""Real FAISS + BM25 + MiniLM retrieval, index manifests and mismatch refusal."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from compose.config import RetrieverConfig
from compose.corpus import Passage
from compose.retrieval.errors import IndexDamagedError
from compose.retrieval.index import (
    IndexMismatchError,
    LoadedIndex,
    build_index,
    check_manifest,
    read_manifest,
)
from compose.retrieval.retriever import Retriever, open_retriever, reciprocal_rank_fusion
from compose.retrieval.store import ensure_index


@pytest.fixture(scope="module")
def retriever(demo_index) -> Retriever:
    return open_retriever(RetrieverConfig(index=str(demo_index)))


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_each_mode_finds_the_obvious_passage(retriever, mode):
    hits = retriever.search("Who invented the kelp-oil lamp?", k=5, mode=mode)
    assert "Kelp-oil lamp" in [h.title for h in hits]
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(hits[i].score >= hits[i + 1].score for i in range(len(hits) - 1))


def test_dense_retrieval_matches_paraphrase_bm25_cannot(retriever):
    # no word overlap with "lighthouse ... first lit" passage wording is needed for dense
    dense = [h.title for h in retriever.search("beacon tower on the coast", k=5, mode="dense")]
    assert "Caskel Lighthouse" in dense


def test_rrf_rewards_agreement():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]], k=3, rrf_k=60)
    assert [doc for doc, _ in fused] == [1, 3, 2]


def test_manifest_records_what_was_built(demo_index):
    manifest = read_manifest(demo_index)
    assert manifest.encoder == "all-MiniLM-L6-v2"
    assert manifest.dimension == 384
    assert manifest.count == len(LoadedIndex(demo_index).passages) >= 100
    assert manifest.format_version == 2
    assert {"passages.jsonl", "dense.faiss"} <= set(manifest.files)


def test_encoder_mismatch_is_refused(demo_index):
    with pytest.raises(IndexMismatchError, match="encoder 'all-MiniLM-L6-v2'.*expected 'e5'"):
        LoadedIndex(demo_index, encoder="e5")


def test_corpus_hash_mismatch_is_refused(demo_index):
    with pytest.raises(IndexMismatchError, match="corpus hash"):
        check_manifest(read_manifest(demo_index), demo_index, corpus="0000")


def test_edited_passages_file_is_detected(demo_index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(demo_index, copy)
    lines = (copy / "passages.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["text"] = "tampered"
    lines[0] = json.dumps(first)
    (copy / "passages.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(IndexDamagedError, match="passages.jsonl differs from the file the index"):
        LoadedIndex(copy)


def test_truncated_passages_file_is_detected(demo_index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(demo_index, copy)
    lines = (copy / "passages.jsonl").read_text().splitlines()
    (copy / "passages.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(IndexDamagedError, match="passages.jsonl differs.*truncated"):
        LoadedIndex(copy)


def test_missing_index_dir_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="composerag index build"):
        LoadedIndex(tmp_path)


def test_hnsw_index_returns_same_top_hit_as_flat(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    passages = [Passage(id=f"p{i}", title=f"t{i}", text=f"passage number {i}") for i in
                range(300)]
    flat = build_index(passages, tmp_path / "flat", vectors=vectors, show_progress=False)
    hnsw = build_index(passages, tmp_path / "hnsw", vectors=vectors, index_type="hnsw",
                       show_progress=False)
    assert (flat.index_type, hnsw.index_type) == ("flat", "hnsw")
    a, b = LoadedIndex(tmp_path / "flat"), LoadedIndex(tmp_path / "hnsw")
    queries = vectors[:20]
    _, flat_ids = a.dense.search(queries, 1)
    _, hnsw_ids = b.dense.search(queries, 1)
    assert (flat_ids == hnsw_ids).mean() >= 0.95


def test_ensure_index_reuses_and_rebuilds_on_change(tmp_path):
    passages = [Passage(id=f"p{i}", title="T", text=f"text {i} about boats") for i in range(5)]
    first = ensure_index(passages, "tiny", root=tmp_path, show_progress=False)
    stamp = (first / "manifest.json").stat().st_mtime_ns
    assert ensure_index(passages, "tiny", root=tmp_path, show_progress=False) == first
    assert (first / "manifest.json").stat().st_mtime_ns == stamp
    changed = ensure_index(passages[:4], "tiny", root=tmp_path, show_progress=False)
    assert changed != first and read_manifest(changed).count == 4


def test_empty_corpus_is_refused(tmp_path):
    with pytest.raises(ValueError, match="empty corpus"):
        build_index([], tmp_path / "x", show_progress=False)

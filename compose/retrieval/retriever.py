"""Dense (FAISS), sparse (BM25) and hybrid retrieval over one index directory.

Hybrid uses reciprocal rank fusion: it needs no score calibration between BM25 and cosine
similarity, and is robust when one of the two retrievers misses entirely.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import faiss

from compose.config import EncoderRuntime, RetrieverConfig
from compose.corpus import ScoredPassage
from compose.retrieval.encoder import embed
from compose.retrieval.index import LoadedIndex, bm25_tokenize

_OPEN: dict[str, Retriever] = {}
_LOCK = threading.Lock()


def reciprocal_rank_fusion(
    rankings: list[list[int]], k: int, rrf_k: int = 60
) -> list[tuple[int, float]]:
    """Fuse rankings of document positions; returns the top ``k`` (position, score)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]


@contextmanager
def single_threaded_faiss() -> Iterator[None]:
    """One query is too small to split: FAISS's OpenMP threads cost more to wake than they
    save (flat search over 10k vectors: about 0.3 ms on one thread, twice that on two, in
    bench/generators.py), and they would compete with llama.cpp's."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


class Retriever:
    def __init__(self, index: LoadedIndex, *, mode: str = "hybrid", rrf_k: int = 60,
                 encoder_runtime: EncoderRuntime = "auto",
                 encoder_threads: int | None = None) -> None:
        self.index = index
        self.mode = mode
        self.rrf_k = rrf_k
        self.encoder_runtime = encoder_runtime
        self.encoder_threads = encoder_threads

    @property
    def fingerprint(self) -> str:
        return self.index.fingerprint

    def dense_search(self, query: str, k: int) -> list[tuple[int, float]]:
        vector = embed([query], self.index.encoder, runtime=self.encoder_runtime,
                       threads=self.encoder_threads)
        with single_threaded_faiss():
            scores, ids = self.index.dense.search(vector, min(k, self.index.dense.ntotal))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def bm25_search(self, query: str, k: int) -> list[tuple[int, float]]:
        tokens = bm25_tokenize([query])
        if not tokens or not tokens[0]:
            return []
        docs, scores = self.index.bm25.retrieve(
            tokens, k=min(k, len(self.index.passages)), show_progress=False
        )
        return [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]

    def search(self, query: str, k: int = 5, mode: str | None = None) -> list[ScoredPassage]:
        mode = mode or self.mode
        if mode == "dense":
            hits = self.dense_search(query, k)
        elif mode == "bm25":
            hits = self.bm25_search(query, k)
        elif mode == "hybrid":
            depth = max(4 * k, 20)
            hits = reciprocal_rank_fusion(
                [[d for d, _ in self.dense_search(query, depth)],
                 [d for d, _ in self.bm25_search(query, depth)]],
                k,
                self.rrf_k,
            )
        else:
            raise ValueError(f"unknown retrieval mode {mode!r} (dense, bm25, hybrid)")
        return [
            ScoredPassage(**self.index.passages[doc].model_dump(), score=score, rank=rank)
            for rank, (doc, score) in enumerate(hits, start=1)
        ]


def open_retriever(config: RetrieverConfig, *,
                   encoder_dir: str | Path | None = None) -> Retriever:
    """Open an index once per process and directory. ``encoder_dir``: the encoder directory
    an index built from one needs (a manifest's path is never trusted, see ``index_encoder``)."""
    # Runtime opens a retriever only once it has checked that an index is configured
    path = str(Path(cast(str, config.index)).expanduser().resolve())
    key = f"{path}\0{encoder_dir or ''}"
    with _LOCK:
        if key not in _OPEN:
            _OPEN[key] = Retriever(LoadedIndex(path, encoder_dir=encoder_dir))
        retriever = _OPEN[key]
        if hasattr(retriever.index.dense, "hnsw"):
            retriever.index.dense.hnsw.efSearch = config.hnsw_ef_search
    return Retriever(retriever.index, mode=config.mode, rrf_k=config.rrf_k,
                     encoder_runtime=config.encoder_runtime,
                     encoder_threads=config.encoder_threads)



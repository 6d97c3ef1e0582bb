"""Building, saving and opening a retrieval index directory.

An index directory holds the passages, a FAISS index over their embeddings, a BM25 index and a
manifest (encoder, dimension, index type, corpus hash, count). Opening an index checks the
manifest against what the caller expects and refuses a mismatch: a FAISS index queried with a
different encoder returns confident nonsense, which is worse than an error.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import bm25s
import faiss
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from compose.corpus import Passage, corpus_hash, load_corpus, write_jsonl
from compose.retrieval.encoder import DEFAULT_ENCODER, embed, passage_text
from compose.retrieval.index_output import install_index, output_state
from compose.retrieval.manifest import FORMAT_VERSION, IndexManifest, IndexType, read_manifest


class IndexMismatchError(ValueError):
    """The index on disk was built differently from what the caller asked for."""


def bm25_tokenize(texts: list[str]):
    return bm25s.tokenize(texts, stopwords="en", show_progress=False, return_ids=False)


def make_faiss_index(dimension: int, index_type: IndexType, hnsw_m: int = 32):
    if index_type == "flat":
        return faiss.IndexFlatIP(dimension)
    index = faiss.IndexHNSWFlat(dimension, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    return index


def embed_with_progress(
    texts: list[str], encoder: str, batch_size: int, show_progress: bool
) -> np.ndarray:
    chunks: list[np.ndarray] = []
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress, console=Console(stderr=True),
                  transient=False) as progress:
        task = progress.add_task("embedding passages", total=len(texts))
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            chunks.append(embed(batch, encoder, batch_size=batch_size))
            progress.advance(task, len(batch))
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def build_index(
    passages: list[Passage],
    out_dir: str | Path,
    *,
    encoder: str = DEFAULT_ENCODER,
    index_type: IndexType = "flat",
    hnsw_m: int = 32,
    batch_size: int = 64,
    show_progress: bool = True,
    vectors: np.ndarray | None = None,
) -> IndexManifest:
    """Write a complete index to ``out_dir``; built in a temp dir beside it and moved in, so
    an interrupted build never leaves a half index behind. ``out_dir`` must be missing, empty
    or an index (else :class:`IndexOutputError`, before any embedding), so no user file is
    ever replaced. ``vectors`` skips embedding (benchmarks)."""
    if not passages:
        raise ValueError("cannot build an index over an empty corpus")
    output_state(out_dir)
    out_dir = Path(out_dir).expanduser().resolve()
    started = time.perf_counter()
    texts = [passage_text(p.title, p.text) for p in passages]
    if vectors is None:
        vectors = embed_with_progress(texts, encoder, batch_size, show_progress)
    dense = make_faiss_index(vectors.shape[1], index_type, hnsw_m)
    dense.add(vectors)
    bm25 = bm25s.BM25()
    bm25.index(bm25_tokenize(texts), show_progress=False)
    manifest = IndexManifest(
        encoder=encoder,
        dimension=int(vectors.shape[1]),
        index_type=index_type,
        hnsw_m=hnsw_m if index_type == "hnsw" else None,
        corpus_hash=corpus_hash(passages),
        count=len(passages),
        build_seconds=round(time.perf_counter() - started, 3),
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        write_jsonl(staging / "passages.jsonl", passages)
        faiss.write_index(dense, str(staging / "dense.faiss"))
        bm25.save(str(staging / "bm25"))
        (staging / "manifest.json").write_text(manifest.model_dump_json(indent=2))
        install_index(staging, out_dir)  # an old index it replaces is left in staging
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return manifest


def check_manifest(
    manifest: IndexManifest,
    index_dir: str | Path,
    *,
    encoder: str | None = None,
    corpus: str | None = None,
) -> None:
    """Raise :class:`IndexMismatchError` naming every difference."""
    problems = []
    if manifest.format_version != FORMAT_VERSION:
        problems.append(f"format version {manifest.format_version} (expected {FORMAT_VERSION})")
    if encoder is not None and manifest.encoder != encoder:
        problems.append(f"encoder {manifest.encoder!r} (expected {encoder!r})")
    if corpus is not None and manifest.corpus_hash != corpus:
        problems.append(f"corpus hash {manifest.corpus_hash} (expected {corpus})")
    if problems:
        raise IndexMismatchError(
            f"index {index_dir} does not match: " + "; ".join(problems)
            + ". Rebuild it with `composerag index build`."
        )


class LoadedIndex:
    """The parts of an index directory, checked against each other."""

    def __init__(self, index_dir: str | Path, *, encoder: str | None = None,
                 corpus: str | None = None) -> None:
        self.path = Path(index_dir)
        self.manifest = read_manifest(self.path)
        check_manifest(self.manifest, self.path, encoder=encoder, corpus=corpus)
        self.passages = load_corpus(self.path / "passages.jsonl")
        self.dense = faiss.read_index(str(self.path / "dense.faiss"))
        self.bm25 = bm25s.BM25.load(str(self.path / "bm25"))
        counts = {"manifest": self.manifest.count, "passages": len(self.passages),
                  "faiss": self.dense.ntotal}
        if len(set(counts.values())) != 1 or self.dense.d != self.manifest.dimension:
            raise IndexMismatchError(
                f"index {self.path} is inconsistent: counts {counts}, "
                f"faiss dimension {self.dense.d} vs manifest {self.manifest.dimension}"
            )
        if corpus is None and corpus_hash(self.passages) != self.manifest.corpus_hash:
            raise IndexMismatchError(
                f"index {self.path}: passages.jsonl was changed after the index was built"
            )

    @property
    def fingerprint(self) -> str:
        m = self.manifest
        return f"{m.corpus_hash}:{m.encoder}:{m.index_type}:{m.count}"



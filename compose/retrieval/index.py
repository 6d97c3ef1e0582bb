"""Building, saving and opening a retrieval index directory.

An index directory holds the passages, a FAISS index over their embeddings, a BM25 index and a
manifest (encoder, dimension, index type, corpus hash, count, and the sha256 of every file).
Opening an index checks the manifest against what the caller expects (else
:class:`IndexMismatchError`) and the files against the manifest and each other (else
:class:`IndexDamagedError`): a FAISS index queried with a different encoder, or one copied in
from another corpus, returns confident nonsense, which is worse than an error.
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
from compose.retrieval.encoder import DEFAULT_ENCODER, embed, known_encoders, passage_text
from compose.retrieval.errors import IndexDamagedError
from compose.retrieval.index_output import IndexOutputError, install_index, output_state
from compose.retrieval.integrity import digest_files, verify_files
from compose.retrieval.manifest import (
    BM25_DIR,
    DENSE_FILE,
    MANIFEST_FILE,
    PASSAGES_FILE,
    IndexManifest,
    IndexType,
    check_format,
    read_manifest,
)


class IndexMismatchError(ValueError):
    """The index on disk was built differently from what the caller asked for."""


class EmptyCorpusError(ValueError):
    """There is nothing to index: no passage, or none with a word BM25 keeps."""


def bm25_tokenize(texts: list[str]) -> list[list[str]]:
    tokens: list[list[str]] = bm25s.tokenize(texts, stopwords="en", show_progress=False,
                                             return_ids=False)
    return tokens


def make_faiss_index(dimension: int, index_type: IndexType, hnsw_m: int = 32) -> faiss.Index:
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
        raise EmptyCorpusError("cannot build an index over an empty corpus")
    output_state(out_dir)
    out_dir = Path(out_dir).expanduser().resolve()
    started = time.perf_counter()
    texts = [passage_text(p.title, p.text) for p in passages]
    tokens = bm25_tokenize(texts)
    if not any(tokens):  # bm25s fails on an empty vocabulary; say so before embedding
        raise EmptyCorpusError(
            f"cannot build an index: none of the {len(passages)} passages has a word BM25 "
            "indexes (all are empty, stop words or one-character tokens)")
    if vectors is None:
        vectors = embed_with_progress(texts, encoder, batch_size, show_progress)
    dense = make_faiss_index(vectors.shape[1], index_type, hnsw_m)
    dense.add(vectors)
    bm25 = bm25s.BM25()
    bm25.index(tokens, show_progress=False)
    staging = make_staging(out_dir)
    try:
        write_jsonl(staging / PASSAGES_FILE, passages)
        faiss.write_index(dense, str(staging / DENSE_FILE))
        bm25.save(str(staging / BM25_DIR))
        manifest = IndexManifest(
            encoder=encoder,
            dimension=int(vectors.shape[1]),
            index_type=index_type,
            hnsw_m=hnsw_m if index_type == "hnsw" else None,
            corpus_hash=corpus_hash(passages),
            count=len(passages),
            build_seconds=round(time.perf_counter() - started, 3),
            files=digest_files(staging),
        )
        (staging / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
        install_index(staging, out_dir)  # an old index it replaces is left in staging
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return manifest


def make_staging(out_dir: Path) -> Path:
    """A temporary directory beside ``out_dir``, so that moving it in is one rename."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    except OSError as error:
        raise IndexOutputError(
            f"cannot write an index into {out_dir}: {error.strerror} ({error.filename})"
        ) from None


def check_manifest(
    manifest: IndexManifest,
    index_dir: str | Path,
    *,
    encoder: str | None = None,
    corpus: str | None = None,
) -> None:
    """Raise :class:`IndexMismatchError` naming every difference from what the caller
    expects."""
    problems = []
    if encoder is not None and manifest.encoder != encoder:
        problems.append(f"encoder {manifest.encoder!r} (expected {encoder!r})")
    if corpus is not None and manifest.corpus_hash != corpus:
        problems.append(f"corpus hash {manifest.corpus_hash} (expected {corpus})")
    if problems:
        raise IndexMismatchError(
            f"index {index_dir} does not match: " + "; ".join(problems)
            + f". Rebuild it with `composerag index build CORPUS {index_dir}`."
        )


def index_encoder(manifest: IndexManifest, index_dir: Path,
                  encoder_dir: str | Path | None) -> str:
    """What embeds queries for this index: a registry name from the manifest, or the
    directory the caller gives. A manifest's encoder is never used as a path: an index is data
    and may come from anywhere, and ``../../../../etc`` must not choose what gets loaded."""
    known = known_encoders()
    if encoder_dir is not None:
        if manifest.encoder in known:
            raise IndexMismatchError(
                f"index {index_dir} was built with the packaged encoder {manifest.encoder!r}; "
                f"an encoder directory ({encoder_dir}) is only for an index built from one")
        directory = Path(encoder_dir).expanduser().resolve()
        if not directory.is_dir():
            raise FileNotFoundError(f"encoder directory {encoder_dir} does not exist")
        return str(directory)
    if manifest.encoder in known:
        return manifest.encoder
    raise IndexDamagedError(
        index_dir, MANIFEST_FILE,
        f"names encoder {manifest.encoder!r}, which is not a known encoder "
        f"({', '.join(known)}); an index built with a local encoder directory opens only when "
        "that directory is given (encoder_dir), never a path read from the manifest")


def read_parts(path: Path) -> tuple[list[Passage], faiss.Index, bm25s.BM25]:
    """Passages, FAISS and BM25 from verified files. Any failure is reported as damage, whatever
    the library raised: the files hash right, so only an edited manifest (or another library
    version) gets here, and the fix is the same rebuild."""
    try:
        passages = load_corpus(path / PASSAGES_FILE)
    except ValueError as error:
        raise IndexDamagedError(path, PASSAGES_FILE, f"does not parse ({error})") from None
    try:
        dense = faiss.read_index(str(path / DENSE_FILE))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise IndexDamagedError(path, DENSE_FILE, f"cannot be read by FAISS ({first})") from None
    try:
        bm25 = bm25s.BM25.load(str(path / BM25_DIR))
    except Exception as error:  # bm25s raises whatever numpy, json or scipy raise
        raise IndexDamagedError(path, BM25_DIR, f"cannot be read by bm25s ({error})") from None
    return passages, dense, bm25


def check_parts(path: Path, manifest: IndexManifest, passages: list[Passage],
                dense: faiss.Index, bm25: bm25s.BM25) -> None:
    """The parts agree with the manifest and with each other in count, shape and kind."""
    counts = {PASSAGES_FILE: len(passages), DENSE_FILE: int(dense.ntotal),
              BM25_DIR: int(bm25.scores["num_docs"])}
    if set(counts.values()) != {manifest.count}:
        found = ", ".join(f"{name} {n}" for name, n in counts.items())
        raise IndexDamagedError(path, MANIFEST_FILE,
                                f"says {manifest.count} passages, the files hold: {found}")
    if dense.d != manifest.dimension:
        raise IndexDamagedError(
            path, MANIFEST_FILE,
            f"says dimension {manifest.dimension}, {DENSE_FILE} has {dense.d}")
    kind = faiss_kind(dense)
    if kind != (manifest.index_type, manifest.hnsw_m):
        raise IndexDamagedError(
            path, MANIFEST_FILE,
            f"says a {manifest.index_type} index (hnsw_m {manifest.hnsw_m}), {DENSE_FILE} is "
            f"{kind[0]} (hnsw_m {kind[1]})")
    digest = corpus_hash(passages)
    if digest != manifest.corpus_hash:
        raise IndexDamagedError(
            path, MANIFEST_FILE,
            f"says corpus hash {manifest.corpus_hash}, {PASSAGES_FILE} hashes to {digest}")


def faiss_kind(dense: faiss.Index) -> tuple[str, int | None]:
    """The manifest's ``index_type`` and ``hnsw_m`` as the FAISS file itself has them."""
    if isinstance(dense, faiss.IndexHNSW):
        # faiss's stubs leave HNSW.nb_neighbors out; the SWIG class has it
        return "hnsw", dense.hnsw.nb_neighbors(1)  # type: ignore[attr-defined]
    return ("flat" if isinstance(dense, faiss.IndexFlat) else type(dense).__name__), None


class LoadedIndex:
    """The parts of an index directory, checked against the manifest and each other.

    ``encoder_dir``: the sentence-transformers directory an index built with a local encoder
    needs (see :func:`index_encoder`); ``encoder`` and ``corpus`` are expectations to check."""

    def __init__(self, index_dir: str | Path, *, encoder: str | None = None,
                 corpus: str | None = None, encoder_dir: str | Path | None = None) -> None:
        self.path = Path(index_dir)
        self.manifest = read_manifest(self.path)
        check_format(self.manifest, self.path)
        check_manifest(self.manifest, self.path, encoder=encoder, corpus=corpus)
        self.encoder = index_encoder(self.manifest, self.path, encoder_dir)
        verify_files(self.path, self.manifest)
        self.passages, self.dense, self.bm25 = read_parts(self.path)
        check_parts(self.path, self.manifest, self.passages, self.dense, self.bm25)

    @property
    def fingerprint(self) -> str:
        m = self.manifest
        return f"{m.corpus_hash}:{m.encoder}:{m.index_type}:{m.count}"

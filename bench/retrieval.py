"""Bench 9b: embedding throughput, index build time and query latency (flat vs HNSW).

    python bench/retrieval.py [--sizes 10000 100000] [--embed-passages 256] [--queries 200]

Embedding 100k passages takes about an hour on 2 cores, so the scale figures use random unit
vectors in the encoder's dimension (384) as stand-ins - a worst case for HNSW, whose recall is
far higher on real embeddings, which cluster; embedding throughput and query-encoding
latency are measured on real text with the real encoder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from compose.corpora.demo import load_demo
from compose.corpus import Passage
from compose.retrieval.encoder import embed, passage_text
from compose.retrieval.index import LoadedIndex, build_index


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def embedding_rate(n: int) -> tuple[float, float]:
    demo = load_demo().corpus
    texts = [passage_text(p.title, p.text) for p in (demo * (n // len(demo) + 1))[:n]]
    embed(texts[:8])
    started = time.perf_counter()
    embed(texts)
    rate = n / (time.perf_counter() - started)
    single = []
    for question in load_demo().questions:
        started = time.perf_counter()
        embed([question.question])
        single.append((time.perf_counter() - started) * 1000)
    return rate, statistics.median(single)


def timed_queries(dense, queries: np.ndarray) -> tuple[list[float], list]:
    latencies, found = [], []
    for query in queries:
        started = time.perf_counter()
        _, ids = dense.search(query[None, :], 10)
        latencies.append((time.perf_counter() - started) * 1000)
        found.append(ids[0])
    return latencies, found


def scale_rows(size: int, n_queries: int, ef_values: list[int], dim: int = 384) -> list[tuple]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(size, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(n_queries, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    passages = [Passage(id=f"s{i}", title=f"synthetic {i}", text=f"synthetic passage {i} "
                        f"about topic {i % 997}") for i in range(size)]
    rows = []
    truth = None
    for index_type in ("flat", "hnsw"):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            build_index(passages, Path(tmp) / "idx", vectors=vectors, index_type=index_type,
                        show_progress=False)
            build_s = time.perf_counter() - started
            dense = LoadedIndex(Path(tmp) / "idx").dense
            for ef in ef_values if index_type == "hnsw" else [None]:
                if ef is not None:
                    dense.hnsw.efSearch = ef
                latencies, found = timed_queries(dense, queries)
                truth = truth if truth is not None else found
                recall = np.mean([len(set(a) & set(b)) / 10
                                  for a, b in zip(found, truth, strict=True)])
                label = index_type if ef is None else f"hnsw ef={ef}"
                rows.append((size, label, build_s, percentile(latencies, 50),
                             percentile(latencies, 95), recall))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--embed-passages", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 512])
    args = parser.parse_args()
    console = Console(width=150)
    rate, query_ms = embedding_rate(args.embed_passages)
    console.print(f"all-MiniLM-L6-v2 on CPU: {rate:.1f} passages/s "
                  f"({args.embed_passages} demo passages); one query embedding: "
                  f"{query_ms:.1f} ms median")
    table = Table(title="Index build (FAISS + BM25 + files, vectors given) and dense query "
                  "latency, top-10, one query at a time")
    for column in ("passages", "index", "build s", "query p50 ms", "query p95 ms",
                   "recall@10 vs flat"):
        table.add_column(column, justify="right")
    for size in args.sizes:
        for row in scale_rows(size, args.queries, args.ef_search):
            table.add_row(f"{row[0]:,}", row[1], f"{row[2]:.1f}", f"{row[3]:.3f}",
                          f"{row[4]:.3f}", f"{row[5]:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()

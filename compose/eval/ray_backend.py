"""Spread an evaluation's questions over Ray workers - processes on this machine or on the
machines of a Ray cluster.

Each worker is a Ray actor that loads the graph once (its own model instance) and answers
questions with the same ``evaluate_one`` the local runner uses; the driver writes records in
question order to the same resumable JSONL file, so a run started locally can be finished on
Ray and the other way round, and both produce the same file. Results come back in order
(``ActorPool.map``): a slow question holds back the writing of later ones, but never the
work on them.

Every machine needs composerag installed and the benchmark file at the same path; each
worker builds (or reuses) the pooled index under its own ``index_root``, and a shared module
cache needs a path all workers can write (SQLite over a network filesystem is not safe - use
one cache per machine or ``--no-cache``).

Usage::

    for record in evaluate_on_ray(todo, EvalJob(graph="naive_rag", dataset=...), workers=4):
        ...
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import ray
from pydantic import BaseModel
from ray.util import ActorPool

from compose.corpus import QAItem


class EvalJob(BaseModel):
    """Everything a worker needs to rebuild the driver's graph on its own machine."""

    graph: str
    dataset: str
    overrides: list[str] = []
    cache: bool = True
    cache_path: str | None = None
    index_root: str | None = None
    recall_k: int = 5
    judge: bool = False
    metric_names: list[str]


@ray.remote
class EvalWorker:
    def __init__(self, job: EvalJob) -> None:
        from compose.api import load_graph
        from compose.corpora.benchmarks import load_benchmark
        from compose.retrieval.store import ensure_index

        data = load_benchmark(job.dataset)
        index = ensure_index(data.corpus, data.name, root=job.index_root, show_progress=False)
        self.job = job
        self.graph = load_graph(job.graph, index=index, overrides=job.overrides,
                                cache=job.cache, cache_path=job.cache_path)

    def evaluate(self, item: dict[str, Any]) -> dict[str, Any]:
        from compose.eval.runner import evaluate_one

        return evaluate_one(self.graph, QAItem.model_validate(item), self.job.recall_k,
                            self.job.metric_names, self.job.judge)


def worker_threads_env(cpus_per_worker: float) -> dict[str, str]:
    """Each worker's llama.cpp threads (prefill and decode) are its CPU share, and its OpenMP
    threads sleep when idle: workers share cores, where spinning threads slow each other
    several-fold (bench/generators.py, the busy-process rows)."""
    return {"OMP_NUM_THREADS": str(max(1, int(cpus_per_worker))), "OMP_WAIT_POLICY": "PASSIVE"}


def start_ray(address: str | None, cpus_needed: int) -> None:
    """Join the cluster at ``address`` ("auto": the one ``ray start`` made here), or start a
    private local instance with room for every worker (oversubscribed rather than stuck)."""
    if ray.is_initialized():
        return
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                               "logging_level": logging.ERROR}
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=max(os.cpu_count() or 1, cpus_needed), **options)


def evaluate_on_ray(todo: list[QAItem], job: EvalJob, *, workers: int,
                    address: str | None = None, cpus_per_worker: float = 1.0
                    ) -> Iterator[dict[str, Any]]:
    """Yield one record per question of ``todo``, in order."""
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    start_ray(address, int(workers * cpus_per_worker + 0.999))
    actors = [EvalWorker.options(num_cpus=cpus_per_worker,
                                 runtime_env={"env_vars": worker_threads_env(cpus_per_worker)}
                                 ).remote(job) for _ in range(workers)]
    try:
        pool = ActorPool(actors)
        yield from pool.map(lambda actor, item: actor.evaluate.remote(item.model_dump()), todo)
    finally:
        for actor in actors:
            ray.kill(actor)

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

    for record in evaluate_on_ray(todo, config.for_workers(), metric_names):
        ...
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import ray
from ray.util import ActorPool

from compose.corpus import QAItem
from compose.eval.config import EvalConfig


class Worker:
    """One Ray actor: rebuilds the driver's graph from its config (paths made absolute by
    :meth:`EvalConfig.for_workers`) on its own machine, then answers questions."""

    def __init__(self, config: EvalConfig, metric_names: list[str]) -> None:
        from compose.api import load_graph
        from compose.corpora.benchmarks import load_benchmark
        from compose.retrieval.store import ensure_index

        data = load_benchmark(config.dataset)
        index = ensure_index(data.corpus, data.name, root=config.index_root,
                             show_progress=False)
        self.config = config
        self.metric_names = metric_names
        self.graph = load_graph(config.graph, index=index, overrides=config.overrides,
                                cache=config.cache, cache_path=config.cache_path)

    def evaluate(self, item: dict[str, Any]) -> dict[str, Any]:
        from compose.eval.question import evaluate_one

        return evaluate_one(self.graph, QAItem.model_validate(item), self.config.recall_k,
                            self.metric_names, self.config.judge)


EvalWorker = ray.remote(Worker)


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


def evaluate_on_ray(todo: list[QAItem], config: EvalConfig, metric_names: list[str], *,
                    cpus_per_worker: float = 1.0) -> Iterator[dict[str, Any]]:
    """Yield one record per question of ``todo``, in order, from ``config.workers`` actors
    (on the cluster at ``config.ray_address``, or a private local instance)."""
    workers = config.workers
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    start_ray(config.ray_address, int(workers * cpus_per_worker + 0.999))
    actors: list[Any] = [EvalWorker.options(num_cpus=cpus_per_worker,
                                 runtime_env={"env_vars": worker_threads_env(cpus_per_worker)}
                                 ).remote(config, metric_names) for _ in range(workers)]
    try:
        pool = ActorPool(actors)
        yield from pool.map(lambda actor, item: actor.evaluate.remote(item.model_dump()), todo)
    finally:
        for actor in actors:
            ray.kill(actor)

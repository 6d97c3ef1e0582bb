"""Fitting a generator's slot weights on a development set (``composerag moi fit-positions``).

For each question: retrieve k passages, run the exploratory passes of ``moi_rerank`` over the
proposed orders, score them; then fit the weights shared by all questions by alternating least
squares (``aggregate.fit_slot_weights``). Questions with fewer than k passages are skipped;
questions whose outcomes do not vary carry no information but do no harm.

Usage::

    samples = collect_samples(runtime, questions, module=MoiRerank(signal="oracle"), k=5)
    weights = fit_slot_weights([(s.orders, s.scores) for s in samples])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from pydantic import BaseModel

from compose.corpus import QAItem
from compose.modules.moi.proposals import propose
from compose.modules.moi.signals import score_passes
from compose.modules.retrieve import Retrieve


class Sample(BaseModel):
    """One question's exploratory outcome: the orders tried and their scores."""

    id: str
    orders: list[list[int]]
    scores: list[float]
    tokens_prompted: int
    tokens_evaluated: int


def collect_samples(runtime, questions: Iterable[QAItem], *, module, k: int,
                    on_sample: Callable[[Sample], None] | None = None) -> list[Sample]:
    """Exploratory passes of ``module`` (a ``MoiRerank``: its strategy, signal, prompt and
    scoring model) on the top-``k`` passages of each question."""
    samples = []
    retrieve = Retrieve(k=k)
    for item in questions:
        ctx = runtime.context()
        passages = retrieve({"query": item.question}, ctx).passages
        if len(passages) < k:
            continue
        orders = propose(module.params.strategy, k, module.params.m, module.rng(item.question))
        passes = module.explore(module.scorer(ctx), item.question, passages, orders)
        scores = score_passes(module.signal, [p.answer for p in passes],
                              [p.mean_logprob for p in passes], item.answers)
        sample = Sample(id=item.id, orders=orders, scores=scores,
                        tokens_prompted=sum(p.tokens_in for p in passes),
                        tokens_evaluated=sum(p.tokens_in - p.cached_tokens for p in passes))
        samples.append(sample)
        if on_sample is not None:
            on_sample(sample)
    return samples


def informative(samples: Iterable[Sample]) -> int:
    """How many samples' outcomes vary across orders (the others say nothing about slots)."""
    return sum(1 for s in samples if np.ptp(s.scores) > 0)

"""Which passage orders MoI tries.

An order is a list of passage indices by slot: ``order[j]`` is the passage shown in slot
``j`` (0 = first). Passage ``i`` is the retriever's rank ``i + 1``; order 0 of every strategy
but ``random`` is the retrieval order itself.

- ``cyclic`` (a Latin square, M = k): the k cyclic shifts; every passage sits in every slot
  exactly once, which is what makes the least-squares utilities well determined.
- ``random``: M distinct uniformly random orders, for when M should differ from k.
- ``prior`` (the retriever-prior pruning, M >= 2): the retrieval order plus M - 1 moves to
  the front of ranks 2..M. Every proposal stays one move away from the retriever's order
  (perturbations near it are the safe ones), ranks 1..M each take the first slot once, and
  ranks past M never move, so M = 2-3 already decides which head passage leads.

Usage::

    propose("cyclic", k=3)        # [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    propose("prior", k=4, m=2)    # [[0, 1, 2, 3], [1, 0, 2, 3]]
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Strategy = Literal["cyclic", "random", "prior"]


def propose(strategy: Strategy, k: int, m: int | None = None,
            rng: np.random.Generator | None = None) -> list[list[int]]:
    """The orders to try for ``k`` passages. ``m`` is ignored by ``cyclic`` (M = k)."""
    if k < 1:
        raise ValueError("there must be at least one passage")
    if strategy == "cyclic":
        return [[(slot + shift) % k for slot in range(k)] for shift in range(k)]
    if strategy == "prior":
        count = min(m or 2, k)
        return [[rank, *[i for i in range(k) if i != rank]] for rank in range(count)]
    if strategy == "random":
        return _random_orders(k, min(m or k, math.factorial(k)), rng or np.random.default_rng(0))
    raise ValueError(f"unknown proposal strategy {strategy!r}")


def _random_orders(k: int, count: int, rng: np.random.Generator) -> list[list[int]]:
    seen: set[tuple[int, ...]] = set()
    orders: list[list[int]] = []
    while len(orders) < count:
        order = tuple(int(i) for i in rng.permutation(k))
        if order not in seen:
            seen.add(order)
            orders.append(list(order))
    return orders

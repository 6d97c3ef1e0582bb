"""Label-free (and one oracle) scores for an exploratory answer.

- ``logprob``: the generator's mean token log-probability of its answer - its confidence.
- ``consistency``: 1 when the answer agrees with the majority answer over all tried orders,
  else 0 (self-consistency; the majority is also the "vote over permuted orders" answer).
- ``oracle``: token F1 against reference answers - the ceiling, for development only.

A pass that answers nothing (empty, "unknown", "none") scores as low as the worst pass and
never forms the majority: an order that hides the answer must not look good.

Usage::

    y = score_passes("consistency", ["Oslo", "oslo.", "Bergen"], [None] * 3)  # [1, 1, 0]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

from compose.text import NON_ANSWERS, is_abstention, normalize_answer, token_f1

Signal = Literal["logprob", "consistency", "oracle"]


def is_non_answer(answer: str) -> bool:
    return is_abstention(answer, NON_ANSWERS)


def majority_answer(answers: Sequence[str]) -> str | None:
    """The most frequent answer (SQuAD-normalised), ties to the earliest; None if no pass
    answered. Returns the first raw spelling of the winning answer."""
    counts = Counter(normalize_answer(a) for a in answers if not is_non_answer(a))
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers
                if not is_non_answer(a) and counts[normalize_answer(a)] == best)


def score_passes(signal: Signal, answers: Sequence[str], mean_logprobs: Sequence[float | None],
                 references: Sequence[str] = ()) -> list[float]:
    """One outcome per pass, higher is better."""
    if signal == "oracle":
        if not references:
            raise ValueError("the oracle signal needs reference answers")
        return [token_f1(a, references) for a in answers]
    if signal == "consistency":
        majority = majority_answer(answers)
        target = normalize_answer(majority) if majority is not None else None
        return [float(normalize_answer(a) == target and not is_non_answer(a)) for a in answers]
    if signal == "logprob":
        valid = [lp for a, lp in zip(answers, mean_logprobs, strict=True)
                 if lp is not None and not is_non_answer(a)]
        floor = min(valid, default=0.0)
        return [lp if lp is not None and not is_non_answer(a) else floor
                for a, lp in zip(answers, mean_logprobs, strict=True)]
    raise ValueError(f"unknown scoring signal {signal!r}")

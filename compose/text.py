"""The answer-text vocabulary: how answers are normalised, compared and found in passages.

Modules (verify, VERDICT, MoI), the tool-call parser and the evaluation all judge answer
text; they share these definitions so that a method and its evaluation cannot drift apart.
The scoring follows the published conventions - SQuAD normalisation and exact match, the
HotpotQA official F1 with its yes/no rule - so numbers are comparable with reported ones.
Standard library only: everything above may import it.

Abstention has more than one meaning in the tree, and each is kept as it was, by name:

- :func:`is_abstention` with :data:`NO_ANSWERS` (empty, or "unknown" after normalisation):
  what the evaluation records as abstained and what ``verify`` refuses to judge.
- :func:`is_abstention` with a caller's wider word set: :data:`NON_ANSWERS` for MoI's
  scoring of permuted passes; VERDICT adds its own prompt's abstention word.
- :func:`is_unknown_reply`: the ``answer`` module's test on the raw reply, which is not
  normalised ("The unknown" is an answer there); its verdict steers graphs (``is_unknown``).

Usage::

    from compose.text import answer_in, is_abstention, token_f1
    token_f1("the New York", ["New York City"])  # 0.8
    is_abstention(" Unknown. ")                  # True
    answer_in("Caskel", "Ilse Ranneth was born in Caskel.")  # True
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Collection, Sequence

UNKNOWN = "unknown"
"""The answer the prompts ask for when the passages do not hold one."""

NO_ANSWERS = frozenset({"", UNKNOWN})
"""Normalised texts that give no answer: nothing at all, or the prompts' "unknown"."""

NON_ANSWERS = NO_ANSWERS | {"none", "na"}
"""Also what small models say instead of answering: "None", "N/A" or "N.A." (both "na")."""

YES_NO_MAYBE = ("yes", "no", "maybe")
"""The closed label set of yes/no/maybe questions (PubMedQA)."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_SPECIAL_ANSWERS = frozenset({"yes", "no", "noanswer"})
_UNKNOWN_REPLIES = frozenset({UNKNOWN, "", "none", "n/a"})


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation and articles, collapse whitespace."""
    s = s.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def answer_tokens(s: str) -> list[str]:
    """The words of the normalised text, as exact match and F1 count them."""
    return normalize_answer(s).split()


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    normalized = normalize_answer(prediction)
    return max((float(normalized == normalize_answer(a)) for a in answers), default=0.0)


def _f1_single(prediction: str, answer: str) -> float:
    """HotpotQA's official F1: a yes/no/noanswer on either side must match exactly."""
    pred, gold = normalize_answer(prediction), normalize_answer(answer)
    if (pred in _SPECIAL_ANSWERS or gold in _SPECIAL_ANSWERS) and pred != gold:
        return 0.0
    pred_tokens, gold_tokens = pred.split(), gold.split()
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD token F1 with HotpotQA's yes/no rule, the best over the gold answers."""
    return max((_f1_single(prediction, a) for a in answers), default=0.0)


def answer_in(answer: str, text: str) -> bool:
    """Whether the answer occurs in the text, both normalised (a substring test, as ALCE's
    STR-EM). An answer that normalises to nothing (e.g. "The") occurs nowhere: it would
    otherwise occur in every text."""
    target = normalize_answer(answer)
    return bool(target) and target in normalize_answer(text)


def is_abstention(text: str, words: Collection[str] = NO_ANSWERS) -> bool:
    """Whether the text, normalised, is one of ``words``: by default empty or "unknown".

    Callers that also count other non-answers pass their wider set (:data:`NON_ANSWERS`)."""
    return normalize_answer(text) in words


def is_unknown_reply(reply: str) -> bool:
    """The ``answer`` module's reading of its own reply: "unknown", "none", "n/a" or nothing,
    ignoring case and surrounding spaces and full stops. Deliberately not normalised: its
    result steers graphs (``is_unknown``) and is cached, so "Unknown!" or "The unknown" stay
    answers, as they always were."""
    return reply.lower().strip(" .") in _UNKNOWN_REPLIES


def choice_label(text: str, labels: Sequence[str] = YES_NO_MAYBE) -> str | None:
    """The label ``text`` names: the whole normalised text or its first word; else None."""
    normalized = normalize_answer(text)
    by_norm = {normalize_answer(label): label for label in labels}
    if normalized in by_norm:
        return by_norm[normalized]
    return by_norm.get(normalized.split(" ", 1)[0]) if normalized else None

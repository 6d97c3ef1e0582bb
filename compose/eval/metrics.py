"""Answer and retrieval metrics, registered by name so a run config can list them as strings.

The scoring follows the published conventions (SQuAD normalisation, the HotpotQA official F1
with its yes/no rule, ALCE's STR-EM for ASQA) so numbers are comparable with reported ones.
Each registered metric scores one evaluation record, a dict with ``prediction``, ``answers``,
``retrieved_ids``, ``gold_ids`` and optionally ``qa_pairs``, and returns ``None`` when the
record carries nothing to score against, so such records are left out of averages rather than
counted as zeros.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from compose.lookup import lookup

MetricFn = Callable[[dict], float | None]
AggregateFn = Callable[[list[dict]], float | None]

METRICS: dict[str, MetricFn] = {}
AGGREGATES: dict[str, tuple[str, AggregateFn]] = {}

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_RECALL_NAME = re.compile(r"recall@(\d+)")
_SPECIAL_ANSWERS = frozenset({"yes", "no", "noanswer"})


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Decorator: add a record-level metric under ``name``; a name cannot be taken twice."""

    def decorator(fn: MetricFn) -> MetricFn:
        existing = METRICS.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"metric name {name!r} is already registered")
        METRICS[name] = fn
        return fn

    return decorator


def register_aggregate(name: str, needs: str) -> Callable[[AggregateFn], AggregateFn]:
    """Decorator: add a metric over a whole run (e.g. macro-F1), which no per-question
    average can express. It is reported for runs whose records carry the record-level
    metric ``needs``, so a benchmark opts in by declaring that metric."""

    def decorator(fn: AggregateFn) -> AggregateFn:
        if name in METRICS or (name in AGGREGATES and AGGREGATES[name][1] is not fn):
            raise ValueError(f"metric name {name!r} is already registered")
        AGGREGATES[name] = (needs, fn)
        return fn

    return decorator


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower-case, drop punctuation and articles, collapse whitespace."""
    s = s.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


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
    """SQuAD token F1, the best over the gold answers."""
    return max((_f1_single(prediction, a) for a in answers), default=0.0)


def recall_at_k(retrieved_ids: Sequence[str], gold_ids: Iterable[str], k: int) -> float | None:
    """Fraction of the distinct gold ids found in the first ``k`` retrieved; None without gold."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    gold = set(gold_ids)
    if not gold:
        return None
    return len(gold & set(retrieved_ids[:k])) / len(gold)


def str_em(prediction: str, qa_pairs: Sequence[dict]) -> float:
    """ASQA STR-EM: fraction of disambiguations whose any short answer occurs in the output.

    Matching is a substring test after normalisation, as in ALCE. A short answer that
    normalises to nothing (e.g. "The") would match every output, so it is ignored.
    """
    if not qa_pairs:
        return 0.0
    normalized = normalize_answer(prediction)
    hits = 0
    for pair in qa_pairs:
        shorts = (normalize_answer(a) for a in pair.get("short_answers") or [])
        hits += any(short and short in normalized for short in shorts)
    return hits / len(qa_pairs)


@register_metric("em")
def _em_metric(record: dict) -> float | None:
    answers = record.get("answers") or []
    return exact_match(record["prediction"], answers) if answers else None


@register_metric("f1")
def _f1_metric(record: dict) -> float | None:
    answers = record.get("answers") or []
    return token_f1(record["prediction"], answers) if answers else None


def recall_at(k: int) -> MetricFn:
    """Return the ``recall@k`` metric, registering it on first use so any cut-off can be named."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    name = f"recall@{k}"
    if name not in METRICS:

        def metric(record: dict) -> float | None:
            if record.get("retrieved_ids") is None:  # the graph never retrieved
                return None
            return recall_at_k(record["retrieved_ids"], record.get("gold_ids") or [], k)

        metric.__name__ = f"recall_at_{k}"
        register_metric(name)(metric)
    return METRICS[name]


recall_at(5)


@register_metric("str_em")
def _str_em_metric(record: dict) -> float | None:
    qa_pairs = record.get("qa_pairs") or []
    return str_em(record["prediction"], qa_pairs) if qa_pairs else None


def get_metric(name: str) -> MetricFn:
    """Look a metric up by name; ``recall@K`` for any K is created on demand."""
    if name not in METRICS and (match := _RECALL_NAME.fullmatch(name)):
        return recall_at(int(match.group(1)))
    return lookup(METRICS, name, "metric")


def compute_metrics(record: dict, names: Iterable[str]) -> dict[str, float | None]:
    """Score one record with each named metric."""
    return {name: get_metric(name)(record) for name in names}


@register_metric("ungrounded")
def _ungrounded_metric(record: dict) -> float | None:
    """1 when a (non-abstained) answer occurs in none of the passages it cites; no citation
    counts as ungrounded. Needs ``cited_texts``."""
    if (record.get("outputs") or {}).get("interpretations") is not None:
        return None  # a listing of readings: scored per reading by grounded_precision
    if record.get("abstained") or "cited_texts" not in record:
        return None
    prediction = normalize_answer(record["prediction"])
    if not prediction:
        return None
    cited = (normalize_answer(text) for text in record["cited_texts"])
    return 0.0 if any(prediction in text for text in cited) else 1.0


@register_metric("ungrounded_judge")
def _ungrounded_judge_metric(record: dict) -> float | None:
    """The ``verify`` module's verdict on the final answer and its cited passages."""
    verdict = record.get("judge_grounded")
    if verdict is None or record.get("abstained"):
        return None
    return 0.0 if verdict else 1.0


@register_metric("citation_precision")
def _citation_precision_metric(record: dict) -> float | None:
    cited = record.get("citations") or []
    gold = set(record.get("gold_ids") or [])
    if not cited or not gold:
        return None
    return sum(1 for c in cited if c in gold) / len(cited)


@register_metric("abstained")
def _abstained_metric(record: dict) -> float | None:
    return float(bool(record["abstained"])) if "abstained" in record else None


# Benchmark-family metrics register themselves on import.
from compose.eval import ambiguity_metrics, choice_metrics  # noqa: E402, F401

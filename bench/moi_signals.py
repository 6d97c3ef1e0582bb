"""Do MoI's exploratory passes find the useful passages? Offline, from recorded trials.

    composerag eval moi_rag --dataset hotpotqa:PATH --limit 100 --out runs/eval/moi_mk.jsonl
    python bench/moi_signals.py runs/eval/moi_mk.jsonl

A ``moi_rag`` results file keeps every question's trials (the order shown, the answer and its
mean token log-probability). From them this script re-scores the passes with each signal -
``logprob``, ``consistency`` and the ``oracle`` (token F1 against the gold answers, the
ceiling) - re-estimates the utilities with the same ridge aggregation and the generator's
slot weights, and reports how well each ranks the gold (supporting) passages above the
others: the pairwise AUC per question, averaged (0.5 is chance), next to the retriever's own
ranking. It also scores the majority answer over the passes, which is exactly what vote mode
answers (the passes are the same greedy generations), so a vote row can be read off an MoI run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean

import numpy as np
from rich.console import Console
from rich.table import Table

from compose.generators.models import resolve_gguf
from compose.modules.moi.aggregate import estimate_utilities
from compose.modules.moi.positions import PositionStore
from compose.modules.moi.signals import majority_answer, score_passes
from compose.text import exact_match, token_f1

SIGNALS = ("logprob", "consistency", "oracle")


def pairwise_auc(scores: list[float], gold: list[bool]) -> float | None:
    """P(a gold passage outscores a non-gold one), ties half; None without both kinds."""
    pos = [s for s, g in zip(scores, gold, strict=True) if g]
    neg = [s for s, g in zip(scores, gold, strict=True) if not g]
    if not pos or not neg:
        return None
    return mean(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)


def question_aucs(record: dict, weights: np.ndarray,
                  ridge_lambda: float) -> tuple[dict[str, float | None], set[str]]:
    """AUC per signal (and for the retriever's order) over the passages the trials moved,
    and the signals whose outcomes vary across the orders (the others cannot rank)."""
    ids = record["retrieved_ids"]
    trials = record["outputs"]["trials"]
    orders = [[ids.index(i) for i in t["order"]] for t in trials]
    answers = [t["answer"] for t in trials]
    gold = [i in record["gold_ids"] for i in ids]
    aucs, varying = {}, set()
    for signal in SIGNALS:
        y = score_passes(signal, answers, [t["mean_logprob"] for t in trials], record["answers"])
        if np.ptp(y) > 0:
            varying.add(signal)
        utilities = estimate_utilities(orders, y, weights, ridge_lambda)
        moved = [p for p in range(len(ids)) if not np.isnan(utilities[p])]
        aucs[signal] = pairwise_auc([float(utilities[p]) for p in moved], [gold[p] for p in moved])
        if signal == "logprob":
            aucs["retriever"] = pairwise_auc([-float(p) for p in moved], [gold[p] for p in moved])
    return aucs, varying


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="a moi_rag results file (.jsonl)")
    parser.add_argument("--model", default="smollm2-135m",
                        help="the generator whose stored slot weights to use")
    parser.add_argument("--weights", type=lambda text: [float(w) for w in text.split(",")],
                        help="slot weights to try instead of the stored ones, e.g. 1,0.5,0,0,0")
    parser.add_argument("--ridge-lambda", type=float, default=0.1)
    args = parser.parse_args()

    records = [json.loads(line) for line in args.results.open(encoding="utf-8") if line.strip()]
    records = [r for r in records if not r.get("error") and r["outputs"].get("trials")]
    if not records:
        raise SystemExit(f"{args.results} holds no MoI trials (was it a moi or vote run?)")
    k = len(records[0]["retrieved_ids"])
    if args.weights is not None:
        if len(args.weights) != k:
            raise SystemExit(f"--weights needs {k} values, one per slot")
        weights, source = np.asarray(args.weights), "given"
    else:
        weights, source = PositionStore().weights_for(
            f"gguf:{resolve_gguf(args.model).name}", k)
    per_signal: dict[str, list[float]] = {}
    varies: dict[str, int] = dict.fromkeys(SIGNALS, 0)
    for record in records:
        aucs, varying = question_aucs(record, weights, args.ridge_lambda)
        for name, auc in aucs.items():
            if auc is not None:
                per_signal.setdefault(name, []).append(auc)
        for name in varying:
            varies[name] += 1
    votes = [majority_answer([t["answer"] for t in r["outputs"]["trials"]]) or "unknown"
             for r in records]

    table = Table(title=f"{len(records)} questions, {source} slot weights "
                  f"{np.round(weights, 2).tolist()}: gold-passage AUC of the utilities")
    for column in ("ranking by", "questions", "gold AUC", "outcome varies across orders"):
        table.add_column(column, justify="left" if column == "ranking by" else "right")
    for name in ("retriever", *SIGNALS):
        values = per_signal.get(name, [])
        table.add_row(name if name != "retriever" else "retriever order (same passages)",
                      str(len(values)), f"{mean(values):.3f}" if values else "n/a",
                      "n/a" if name == "retriever" else f"{varies[name]} of {len(records)}")
    console = Console(width=160)
    console.print(table)
    console.print(
        f"majority vote over the passes: EM "
        f"{mean(exact_match(v, r['answers']) for v, r in zip(votes, records, strict=True)):.3f}"
        f", F1 {mean(token_f1(v, r['answers']) for v, r in zip(votes, records, strict=True)):.3f}"
        f", {mean(len(r['outputs']['trials']) for r in records):.2f} calls/question")


if __name__ == "__main__":
    main()

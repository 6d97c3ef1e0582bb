"""Compare evaluation runs of the same questions, paired against the first (the baseline).

    python bench/compare_runs.py "retrieval order=runs/eval/moi_keep.jsonl" \\
        "MoI M=k=runs/eval/moi_mk.jsonl" ...

On 100 questions a 0.02 EM difference is two answers, so a mean alone cannot say whether one
configuration beats another; every row reports its paired difference from the baseline with
a 95% bootstrap interval over the questions, and how many questions it won and lost on F1.
Only questions present in every file are compared (a run still in progress is cut to the
common prefix). Cost columns: generator calls, prompt tokens sent, and prompt tokens actually
evaluated - lower where llama.cpp reused the KV state of a shared prefix, which the
``moi_rerank`` node records as ``tokens_prompted``/``tokens_evaluated``; other calls count
as fully evaluated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

BOOTSTRAP_SAMPLES = 10_000


def load(path: Path) -> dict[str, dict]:
    records = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                records[record["id"]] = record
    return records


def tokens_evaluated(record: dict) -> int:
    outputs = record.get("outputs", {})
    reused = outputs.get("tokens_prompted", 0) - outputs.get("tokens_evaluated", 0)
    return record.get("tokens_in", 0) - reused


def metric(record: dict, name: str) -> float:
    """A question's score; an errored question scores 0 (it gave no answer)."""
    value = record.get("metrics", {}).get(name)
    return 0.0 if value is None else float(value)


def paired_interval(diffs: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean paired difference."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(diffs), size=(BOOTSTRAP_SAMPLES, len(diffs)))
    means = diffs[draws].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def signed(value: float) -> str:
    return f"{value:+.3f}"


COLUMNS = ("run", "errors", "EM", "F1", "ΔEM [95% CI]", "ΔF1 [95% CI]", "F1 won/lost",
           "calls/q", "tokens prompted/q", "tokens evaluated/q", "wall s/q")


def compare(runs: list[tuple[str, dict[str, dict]]]) -> tuple[str, list[list[str]]]:
    """The title and one row of ``COLUMNS`` per run."""
    ids = [i for i in runs[0][1] if all(i in records for _, records in runs)]
    if not ids:
        raise SystemExit("the runs share no question ids")
    base = runs[0][1]
    title = (f"{len(ids)} questions present in every run; differences are paired against "
             f"'{runs[0][0]}', with 95% bootstrap intervals")
    table = []
    for label, records in runs:
        rows = [records[i] for i in ids]
        em = np.array([metric(r, "em") for r in rows])
        f1 = np.array([metric(r, "f1") for r in rows])
        base_em = np.array([metric(base[i], "em") for i in ids])
        base_f1 = np.array([metric(base[i], "f1") for i in ids])
        d_em, d_f1 = em - base_em, f1 - base_f1
        lo_em, hi_em = paired_interval(d_em)
        lo_f1, hi_f1 = paired_interval(d_f1)
        table.append([
            label,
            str(sum(1 for r in rows if r.get("error"))),
            f"{em.mean():.3f}", f"{f1.mean():.3f}",
            f"{signed(d_em.mean())} [{signed(lo_em)}, {signed(hi_em)}]",
            f"{signed(d_f1.mean())} [{signed(lo_f1)}, {signed(hi_f1)}]",
            f"{int((d_f1 > 0).sum())}/{int((d_f1 < 0).sum())}",
            f"{np.mean([r.get('llm_calls', 0) for r in rows]):.2f}",
            f"{np.mean([r.get('tokens_in', 0) for r in rows]):,.0f}",
            f"{np.mean([tokens_evaluated(r) for r in rows]):,.0f}",
            f"{np.mean([r.get('wall_s', 0.0) for r in rows]):.1f}",
        ])
    return title, table


def as_markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def as_rich(title: str, rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in rows:
        table.add_row(*row)
    return table


def labelled(spec: str) -> tuple[str, Path]:
    label, sep, path = spec.rpartition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {spec!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"no results file at {path}")
    return label, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=labelled,
                        help="LABEL=PATH of a results file; the first is the baseline")
    parser.add_argument("--markdown", action="store_true",
                        help="print a Markdown table (for notes and the README)")
    args = parser.parse_args()
    title, rows = compare([(label, load(path)) for label, path in args.runs])
    if args.markdown:
        print(f"{title}\n\n{as_markdown(rows)}")
    else:
        Console(width=200).print(as_rich(title, rows))


if __name__ == "__main__":
    main()

"""Paired comparison of evaluation runs of the same questions against the first (the baseline).

On 100 questions a 0.02 EM difference is two answers, so a mean alone cannot say whether one
configuration beats another: each run is reported with its paired difference from the
baseline, a 95% percentile bootstrap interval of that difference over the questions, and how
many questions it won, lost and tied on the primary metric. Only questions present in every
run are compared, so a run still in progress is cut to the questions it has finished; runs of
different benchmarks are refused, since equal question ids would pair unrelated questions.
The cost columns are per question: generator calls, prompt tokens sent, prompt tokens actually
evaluated (fewer where llama.cpp reused the KV state of a shared prefix, which ``moi_rerank``
records as ``tokens_prompted``/``tokens_evaluated``; other calls count as fully evaluated) and
wall seconds; per-node seconds come from each record's ``node_latency_s``.

Files are only read, never repaired: a torn last line may be a record being written right now.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compose.eval.results_file import scan_results

BOOTSTRAP_SAMPLES = 10_000
DEFAULT_METRICS = ("em", "f1")


class CompareError(ValueError):
    """Runs that cannot be compared; the message names the file or runs at fault."""


@dataclass(frozen=True)
class RunFile:
    """One results file as read: its records by question id, and what its ``.meta.json``
    sidecar says it evaluated (None without a readable sidecar)."""

    label: str
    path: Path
    records: dict[str, dict[str, Any]]
    dataset: str | None = None
    skipped_lines: int = 0


@dataclass(frozen=True)
class MetricStat:
    """A metric over the compared questions that carry it, and its paired difference from
    the baseline (None for the baseline itself, or when no question is scored in both)."""

    mean: float | None
    scored: int
    delta: float | None = None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Cost:
    """Means per compared question."""

    seconds: float
    llm_calls: float
    tokens_in: float
    tokens_evaluated: float
    tokens_out: float


@dataclass(frozen=True)
class RunStats:
    label: str
    path: Path
    records: int
    errors: int
    metrics: dict[str, MetricStat]
    won: int
    lost: int
    tied: int
    cost: Cost
    node_seconds: dict[str, float]


@dataclass(frozen=True)
class Comparison:
    question_ids: list[str]
    metrics: tuple[str, ...]
    primary: str
    runs: list[RunStats]
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> RunStats:
        return self.runs[0]

    @property
    def title(self) -> str:
        return (f"{len(self.question_ids)} questions present in every run; differences are "
                f"paired against '{self.baseline.label}', with 95% bootstrap intervals")


def parse_run_spec(spec: str) -> tuple[str, Path]:
    """``LABEL=PATH``, or a bare path labelled by its file name without the suffix. A spec
    naming an existing file is a path even if it holds ``=``."""
    path = Path(spec)
    if path.is_file():
        return path.stem, path
    label, sep, rest = spec.rpartition("=")
    if sep and label and rest:
        return label, Path(rest)
    return path.stem, path


def _meta_dataset(path: Path) -> str | None:
    """The benchmark name in the sidecar ``runner.open_results`` writes, without its path."""
    try:
        meta = json.loads(path.with_suffix(".meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    dataset = meta.get("dataset") if isinstance(meta, dict) else None
    return dataset.split(":", 1)[0] if isinstance(dataset, str) else None


def load_run(path: Path, label: str | None = None) -> RunFile:
    """Read a results file; a later record of a question replaces an earlier one (a rerun).
    Lines that are not evaluation records are skipped and counted."""
    if not path.exists():
        raise CompareError(f"no results file at {path}")
    if not path.is_file():
        raise CompareError(f"{path} is not a file")
    scan = scan_results(path.read_bytes())
    records = [r for r in scan.records if isinstance(r.get("metrics"), dict)]
    if not records:
        if scan.damaged:
            why = f"{path}:{scan.damaged[0].number}: {scan.damaged[0].reason}"
        elif scan.records:
            why = "its records hold no metrics; is it a traces file?"
        else:
            why = "it holds no complete record"
        raise CompareError(f"{path} is not an evaluation results file ({why})")
    return RunFile(label=label or path.stem, path=path, records={r["id"]: r for r in records},
                   dataset=_meta_dataset(path),
                   skipped_lines=len(scan.damaged) + len(scan.records) - len(records))


def load_runs(specs: Sequence[str]) -> list[RunFile]:
    """Every ``LABEL=PATH`` or ``PATH`` spec read; labels must tell the runs apart."""
    runs = [load_run(path, label) for label, path in map(parse_run_spec, specs)]
    labels = [run.label for run in runs]
    if repeated := sorted({label for label in labels if labels.count(label) > 1}):
        raise CompareError(f"two runs are labelled {', '.join(map(repr, repeated))}; name "
                           "them apart as LABEL=PATH")
    return runs


def paired_interval(diffs: np.ndarray, seed: int = 0,
                    samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean paired difference, resampling questions.
    Drawn in blocks, so a long run does not hold a samples x questions index matrix."""
    if len(diffs) == 0:
        raise ValueError("no paired differences to resample")
    rng = np.random.default_rng(seed)
    block = max(1, 2_000_000 // len(diffs))
    means = np.concatenate([
        diffs[rng.integers(0, len(diffs), size=(min(block, samples - start), len(diffs)))]
        .mean(axis=1) for start in range(0, samples, block)])
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _value(record: dict[str, Any], name: str) -> float | None:
    value = record["metrics"].get(name)
    return None if value is None else float(value)


def _check_same_benchmark(runs: list[RunFile], ids: list[str]) -> None:
    datasets = {run.label: run.dataset for run in runs if run.dataset}
    if len(set(datasets.values())) > 1:
        named = ", ".join(f"{label} ({name})" for label, name in datasets.items())
        raise CompareError(f"the runs evaluated different benchmarks: {named}; compare runs "
                           "of one benchmark")
    base = runs[0]
    for run in runs[1:]:
        for qid in ids:
            asked = base.records[qid].get("question"), run.records[qid].get("question")
            if None not in asked and asked[0] != asked[1]:
                raise CompareError(
                    f"question {qid!r} is {asked[0]!r} in {base.label} but {asked[1]!r} in "
                    f"{run.label}: these are runs of different benchmarks")


def _tokens_evaluated(record: dict[str, Any]) -> int:
    outputs = record.get("outputs") or {}
    reused: int = outputs.get("tokens_prompted", 0) - outputs.get("tokens_evaluated", 0)
    tokens_in: int = record.get("tokens_in", 0)
    return tokens_in - reused


def _cost(rows: list[dict[str, Any]]) -> Cost:
    def mean(values: list[float]) -> float:
        return float(np.mean(values))

    return Cost(seconds=mean([r.get("wall_s", 0.0) for r in rows]),
                llm_calls=mean([r.get("llm_calls", 0) for r in rows]),
                tokens_in=mean([r.get("tokens_in", 0) for r in rows]),
                tokens_evaluated=mean([_tokens_evaluated(r) for r in rows]),
                tokens_out=mean([r.get("tokens_out", 0) for r in rows]))


def _node_seconds(rows: list[dict[str, Any]]) -> dict[str, float]:
    nodes = list(dict.fromkeys(n for r in rows for n in r.get("node_latency_s") or {}))
    return {node: float(np.mean([(r.get("node_latency_s") or {}).get(node, 0.0)
                                 for r in rows])) for node in nodes}


def _metric_stat(rows: list[dict[str, Any]], base_rows: list[dict[str, Any]], name: str,
                 paired: bool, seed: int) -> MetricStat:
    values = [_value(r, name) for r in rows]
    scored = [v for v in values if v is not None]
    mean = float(np.mean(scored)) if scored else None
    if not paired:
        return MetricStat(mean, len(scored))
    diffs = np.array([v - b for v, b in zip(values, (_value(r, name) for r in base_rows),
                                            strict=True) if v is not None and b is not None])
    if not len(diffs):
        return MetricStat(mean, len(scored))
    low, high = paired_interval(diffs, seed)
    return MetricStat(mean, len(scored), float(diffs.mean()), low, high)


def compare_runs(runs: Sequence[RunFile], metrics: Sequence[str] = DEFAULT_METRICS,
                 primary: str | None = None, seed: int = 0) -> Comparison:
    """The paired comparison of ``runs`` against ``runs[0]``. ``primary`` (default ``f1``
    when compared, else the first metric) decides won/lost/tied: a question is won when the
    run scores it higher than the baseline."""
    runs = list(runs)
    if len(runs) < 2:
        raise CompareError("a comparison needs at least two runs; the first is the baseline")
    metrics = tuple(dict.fromkeys(metrics))
    if not metrics:
        raise CompareError("name at least one metric to compare")
    primary = primary or ("f1" if "f1" in metrics else metrics[0])
    if primary not in metrics:
        raise CompareError(f"the primary metric {primary!r} is not among the compared "
                           f"metrics ({', '.join(metrics)})")
    present = {name for run in runs for r in run.records.values() for name in r["metrics"]}
    if missing := [m for m in metrics if m not in present]:
        raise CompareError(f"no run records the metric(s) {', '.join(missing)}; the runs "
                           f"record {', '.join(sorted(present))}")
    ids = [i for i in runs[0].records if all(i in run.records for run in runs)]
    if not ids:
        raise CompareError("the runs share no question ids")
    _check_same_benchmark(runs, ids)
    notes = [f"{run.label}: {run.skipped_lines} line(s) of {run.path} skipped (not a "
             "complete evaluation record)" for run in runs if run.skipped_lines]
    notes += [f"{run.label}: {len(run.records) - len(ids)} of its {len(run.records)} "
              "questions are missing from another run and left out" for run in runs
              if len(run.records) > len(ids)]
    base_rows = [runs[0].records[i] for i in ids]
    stats = []
    for index, run in enumerate(runs):
        rows = [run.records[i] for i in ids]
        won = lost = tied = 0
        if index:
            for row, base in zip(rows, base_rows, strict=True):
                value, reference = _value(row, primary), _value(base, primary)
                if value is not None and reference is not None:
                    won += value > reference
                    lost += value < reference
                    tied += value == reference
        stats.append(RunStats(
            label=run.label, path=run.path, records=len(run.records),
            errors=sum(1 for r in rows if r.get("error")),
            metrics={m: _metric_stat(rows, base_rows, m, bool(index), seed) for m in metrics},
            won=won, lost=lost, tied=tied, cost=_cost(rows), node_seconds=_node_seconds(rows)))
    return Comparison(question_ids=ids, metrics=metrics, primary=primary, runs=stats,
                      notes=notes)

"""The evaluation runner: resumable, streaming, cached.

Each question's result is appended to a JSONL file and fsynced before the next question
starts, so a killed run loses at most the question in flight; on restart the runner drops a
torn last line, skips the ids already present and appends the rest. A sidecar ``.meta.json``
records what the file was produced with, and a resume with different settings is refused
instead of mixing results. The file is locked for the whole run, reading it keeps every
intact record around a damaged line (``compose.eval.results_file``).

A run goes through four steps, each its own function: :func:`prepare` (benchmark, index,
graph, metrics), :func:`resume` (what the file already holds), :func:`execute` (the questions
left, locally or on Ray) and :func:`write` (each record as it comes).

Usage::

    records = run_evaluation(EvalConfig(graph="naive_rag", dataset="demo", out=path))
    records = run_eval("naive_rag", "demo", out=path, limit=10)  # the same, as JSON dicts
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from compose.api import ComposeGraph, load_graph
from compose.corpora.benchmarks import load_benchmark
from compose.corpus import BenchmarkData, Passage, QAItem
from compose.eval.config import EvalConfig, ResultsMeta
from compose.eval.metrics import compute_metrics
from compose.eval.progress import EvalProgress
from compose.eval.question import evaluate_one
from compose.eval.record import EvalRecord
from compose.eval.results_file import ResultsFileError, drop_records, read_done, results_lock
from compose.eval.writer import ResultsWriter
from compose.retrieval.store import ensure_index
from compose.text import is_abstention


class ResumeMismatchError(ValueError):
    pass


class EvalInterrupted(KeyboardInterrupt):
    """Ctrl-C during an evaluation. Every finished question is already on disk (fsynced), so
    this says how many, and the same call resumes from there; only the question in flight is
    lost. A ``KeyboardInterrupt``, so ``except Exception`` handlers still let it through."""

    def __init__(self, out: Path, saved: int, total: int) -> None:
        super().__init__(f"interrupted: {saved} of {total} results saved in {out}")
        self.out, self.saved, self.total = out, saved, total


@dataclass
class PreparedRun:
    """What the steps after :func:`prepare` share: the config, the benchmark and the
    questions asked of it, the loaded graph, the sidecar to match and the metrics to score."""

    config: EvalConfig
    data: BenchmarkData
    questions: list[QAItem]
    graph: ComposeGraph
    meta: ResultsMeta
    metric_names: list[str]


def run_eval(graph: str, dataset: str, *, out: str | Path, **settings: Any
             ) -> list[dict[str, Any]]:
    """Run (or resume) an evaluation given as keywords (the fields of :class:`EvalConfig`);
    returns every record of the results file for the questions asked, as JSON."""
    config = EvalConfig(graph=graph, dataset=dataset, out=Path(out), **settings)
    return [record.to_json() for record in run_evaluation(config)]


def run_evaluation(config: EvalConfig) -> list[EvalRecord]:
    """Run (or resume) an evaluation; returns every record in the results file for the
    questions asked, rescored.

    ``backend="ray"`` spreads the questions over ``workers`` Ray actors (a local instance,
    or the cluster at ``ray_address``); the file written is the same either way.
    ``retry_errors`` runs again the questions whose record holds an error (a crashed model
    server, say); without it they count as done, and as errors in the table.
    ``show_progress`` reports on stderr (a bar on a terminal, plain lines elsewhere, and
    "resuming: N of M done"). Ctrl-C raises :class:`EvalInterrupted`, which counts what was
    saved."""
    config.out.parent.mkdir(parents=True, exist_ok=True)
    with results_lock(config.out):  # held until the last record is written
        run = prepare(config)
        done = resume(run)
        done_ids = {r.id for r in done}
        todo = [q for q in run.questions if q.id not in done_ids]
        write(run, execute(run, todo), done, pending=len(todo))
        corpus = {p.id: p for p in run.data.corpus}
        wanted = {q.id for q in run.questions}
        return [rescore(r, corpus, run.metric_names) for r in done if r.id in wanted]


def prepare(config: EvalConfig) -> PreparedRun:
    """Load the benchmark, its index and the graph, and fix the metrics, before the results
    file is read: whatever bad input can break fails here, with nothing written."""
    data = load_benchmark(config.dataset)
    questions = data.questions[:config.limit] if config.limit else data.questions
    index = ensure_index(data.corpus, data.name, root=config.index_root,
                         show_progress=config.show_progress)
    graph = load_graph(config.graph, index=index, overrides=config.overrides,
                       cache=config.cache, cache_path=config.cache_path)
    meta = ResultsMeta(
        **config.settings(), model=graph.spec.generator.model,
        spec_sha=hashlib.sha256(graph.spec.model_dump_json().encode()).hexdigest()[:16])
    return PreparedRun(config, data, questions, graph, meta,
                       metric_names(config, data, questions))


def metric_names(config: EvalConfig, data: BenchmarkData, questions: list[QAItem]) -> list[str]:
    """The metrics every run reports, then those the settings and the benchmark call for."""
    names = ["em", "f1", f"recall@{config.recall_k}", "ungrounded", "citation_precision",
             "abstained"]
    if config.judge:
        names.append("ungrounded_judge")
    if any("qa_pairs" in q.meta for q in questions):
        names.append("str_em")
    names += [name for name in data.metrics if name not in names]
    return names


def resume(run: PreparedRun) -> list[EvalRecord]:
    """The records of earlier attempts that count as done, typed: the results file is read
    once, here, and a record that does not fit the schema is refused by its id rather than
    scored wrongly later."""
    out = run.config.out
    done = open_results(out, run.meta, restart=run.config.restart,
                        retry_errors=run.config.retry_errors)
    try:
        return [EvalRecord.model_validate(line) for line in done]
    except ValidationError as exc:
        raise ResultsFileError(f"{out} holds a record that is not an evaluation record: "
                               f"{exc}") from None


def open_results(out: Path, meta: ResultsMeta, *, restart: bool,
                 retry_errors: bool) -> list[dict[str, Any]]:
    """The records already in ``out`` that count as done, after refusing a resume with other
    settings; the caller holds the file's lock. The sidecar is written only once the file
    has been read, so a file refused as not-results gets none."""
    meta_path = out.with_suffix(".meta.json")
    if restart:
        out.unlink(missing_ok=True)
    if out.exists() and meta_path.exists():
        previous = ResultsMeta.model_validate_json(meta_path.read_text())
        if previous.model_dump(exclude={"limit"}) != meta.model_dump(exclude={"limit"}):
            raise ResumeMismatchError(
                f"{out} was produced with other settings ({previous.model_dump()}); "
                "pass --restart to start over or choose another --out"
            )
    done = read_done(out)
    meta_path.write_text(meta.model_dump_json(indent=2))
    failed = {r["id"] for r in done if r.get("error")}
    if retry_errors and failed:
        drop_records(out, failed)
        done = [r for r in done if r["id"] not in failed]
    return done


def execute(run: PreparedRun, todo: list[QAItem]) -> Iterator[dict[str, Any]]:
    """The records of ``todo``, in question order, as they are answered - lazily, so that
    each is written as soon as it exists - here or on Ray workers (each with its own graph)."""
    config = run.config
    if config.backend == "ray" and todo:
        from compose.eval.ray_backend import evaluate_on_ray

        return evaluate_on_ray(todo, config.for_workers(), run.metric_names)
    return (evaluate_one(run.graph, item, config.recall_k, run.metric_names, config.judge)
            for item in todo)


def write(run: PreparedRun, results: Iterable[dict[str, Any]], done: list[EvalRecord], *,
          pending: int) -> None:
    """Append each new record to the results file (its trace to the traces file, when kept)
    the moment it arrives, and to ``done``; progress counts the ``pending`` questions. Ctrl-C
    is turned into :class:`EvalInterrupted`, which says how many results are safe."""
    config = run.config
    total = len(run.questions)
    try:
        with ResultsWriter(config.out, config.traces_path if config.save_traces else None
                           ) as writer, EvalProgress(f"{config.graph} on {run.data.name}",
                                                     total, total - pending,
                                                     enabled=config.show_progress) as progress:
            for line in results:
                trace = line.pop("trace")
                record = EvalRecord.model_validate(line)
                writer.write(record, trace)
                done.append(record)
                progress.advance(failed=bool(record.error))
    except KeyboardInterrupt:
        wanted = {q.id for q in run.questions}
        saved = sum(1 for r in done if r.id in wanted)
        raise EvalInterrupted(config.out, saved, total) from None


def rescore(record: EvalRecord, corpus: dict[str, Passage],
            metric_names: list[str]) -> EvalRecord:
    """Recompute metrics, so records written by an older version (without ``cited_texts``
    or ``abstained``) are scored like new ones; the corpus supplies cited texts by id."""
    record = record.model_copy()
    if record.cited_texts is None:
        record.cited_texts = [f"{corpus[c].title} {corpus[c].text}"
                              for c in record.citations if c in corpus]
    if record.abstained is None:
        record.abstained = is_abstention(record.prediction)
    record.metrics = compute_metrics(record, metric_names)
    return record

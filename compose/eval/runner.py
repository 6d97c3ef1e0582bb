"""The evaluation runner: resumable, streaming, cached.

Each question's result is appended to a JSONL file and fsynced before the next question
starts, so a killed run loses at most the question in flight; on restart the runner drops a
torn last line, skips the ids already present and appends the rest. A sidecar ``.meta.json``
records what the file was produced with, and a resume with different settings is refused
instead of mixing results. The file is locked for the whole run, reading it keeps every
intact record around a damaged line (``compose.eval.results_file``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from compose.api import load_graph
from compose.corpora.benchmarks import load_benchmark
from compose.corpus import QAItem
from compose.eval.metrics import compute_metrics, normalize_answer
from compose.eval.progress import EvalProgress
from compose.eval.results_file import drop_records, read_done, results_lock
from compose.modules.answer import UNKNOWN
from compose.retrieval.store import ensure_index
from compose.trace import totals

RETRIEVAL_MODULES = {"retrieve"}


class ResumeMismatchError(ValueError):
    pass


class EvalInterrupted(KeyboardInterrupt):
    """Ctrl-C during an evaluation. Every finished question is already on disk (fsynced), so
    this says how many, and the same call resumes from there; only the question in flight is
    lost. A ``KeyboardInterrupt``, so ``except Exception`` handlers still let it through."""

    def __init__(self, out: Path, saved: int, total: int) -> None:
        super().__init__(f"interrupted: {saved} of {total} results saved in {out}")
        self.out, self.saved, self.total = out, saved, total


class EvalSettings(BaseModel):
    graph: str
    dataset: str
    limit: int | None
    overrides: list[str]
    spec_sha: str
    model: str
    recall_k: int
    judge: bool = False


def retrieved_ids(trace: list[dict], k: int) -> list[str] | None:
    """The first ``k`` passages of every retrieval call in the run, pooled in order; None
    when nothing was retrieved at all (recall is then not applicable)."""
    calls = [e for e in trace if e.get("module") in RETRIEVAL_MODULES]
    if not calls:
        return None
    ids: list[str] = []
    for event in calls:
        for passage in (event.get("output") or {}).get("passages", [])[:k]:
            if passage["id"] not in ids:
                ids.append(passage["id"])
    return ids


def retrieved_passages(trace: list[dict]) -> dict[str, dict]:
    """Every passage any retrieval call returned in the run, by id."""
    return {p["id"]: p for event in trace if event.get("module") in RETRIEVAL_MODULES
            for p in (event.get("output") or {}).get("passages", [])}


def judge_grounding(graph, question: str, answer: str, passages: list[dict]) -> tuple[bool, int]:
    """The verify module's verdict on a final answer; returns (grounded, LLM calls made)."""
    from compose.modules.verify import Verify

    ctx = graph.runtime.context()
    verdict = Verify(mode="llm")({"question": question, "answer": answer,
                                  "passages": passages}, ctx)
    return verdict.grounded, ctx.stats.llm_calls


def graph_outputs(graph, state: dict) -> dict[str, Any]:
    """The graph's declared outputs besides the answer and citations, as plain JSON, so
    graph-specific metrics (interpretations, tool calls) can score them later."""
    skip = {"answer", "citations"}
    return to_jsonable_python({name: state.get(name) for name in graph.spec.outputs
                               if name not in skip and name in state}, fallback=str)


def append_line(path: Path, data: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(data, ensure_ascii=False) + "\n")


def open_results(out: Path, settings: EvalSettings, *, restart: bool,
                 retry_errors: bool) -> list[dict]:
    """The records already in ``out`` that count as done, after refusing a resume with other
    settings; the caller holds the file's lock. The sidecar is written only once the file
    has been read, so a file refused as not-results gets none."""
    meta_path = out.with_suffix(".meta.json")
    if restart:
        out.unlink(missing_ok=True)
    if out.exists() and meta_path.exists():
        previous = EvalSettings.model_validate_json(meta_path.read_text())
        if previous.model_dump(exclude={"limit"}) != settings.model_dump(exclude={"limit"}):
            raise ResumeMismatchError(
                f"{out} was produced with other settings ({previous.model_dump()}); "
                "pass --restart to start over or choose another --out"
            )
    done = read_done(out)
    meta_path.write_text(settings.model_dump_json(indent=2))
    failed = {r["id"] for r in done if r.get("error")}
    if retry_errors and failed:
        drop_records(out, failed)
        done = [r for r in done if r["id"] not in failed]
    return done


def evaluate_one(graph, item: QAItem, recall_k: int, metric_names: list[str],
                 judge: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    record: dict[str, Any] = {"id": item.id, "question": item.question, "answers": item.answers,
                              "gold_ids": item.gold_ids, "error": None}
    trace: list[dict] = []
    state: dict[str, Any] = {}
    try:
        state = graph.invoke({"question": item.question})
        trace = state.get("trace", [])
    except Exception as exc:  # recorded, never dropped: the table counts errors
        record["error"] = f"{type(exc).__name__}: {exc}"
    record["prediction"] = str(state.get("answer") or "")
    record["outputs"] = graph_outputs(graph, state)
    record["citations"] = state.get("citations") or []
    record["abstained"] = bool(state.get("abstained")) or normalize_answer(
        record["prediction"]) in ("", UNKNOWN)
    record["trace"] = trace
    record["retrieved_ids"] = retrieved_ids(trace, recall_k)
    pool = retrieved_passages(trace)
    cited = [pool[c] for c in record["citations"] if c in pool]
    record["cited_texts"] = [f"{p['title']} {p['text']}" for p in cited]
    if judge and not record["abstained"] and not record["error"]:
        record["judge_grounded"], record["judge_llm_calls"] = judge_grounding(
            graph, item.question, record["prediction"], cited)
    if "qa_pairs" in item.meta:
        record["qa_pairs"] = item.meta["qa_pairs"]
    spent = totals(trace)
    record.update(
        llm_calls=spent.llm_calls,
        tokens_in=spent.tokens_in,
        tokens_out=spent.tokens_out,
        generator_s=round(spent.generator_s, 4),
        retriever_s=round(spent.retriever_s, 4),
        node_latency_s={k: round(v, 4) for k, v in spent.node_latency_s.items()},
        module_calls=len(trace),
        cache_hits=sum(1 for e in trace if e.get("cache_hit")),
        wall_s=round(time.perf_counter() - started, 4),
    )
    record["metrics"] = compute_metrics(record, metric_names)
    return record


def run_eval(
    graph_name: str,
    dataset: str,
    *,
    out: str | Path,
    limit: int | None = None,
    overrides: list[str] | None = None,
    cache: bool = True,
    cache_path: str | None = None,
    index_root: str | Path | None = None,
    recall_k: int = 5,
    restart: bool = False,
    judge: bool = False,
    save_traces: bool = False,
    show_progress: bool = True,
    backend: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    retry_errors: bool = False,
) -> list[dict]:
    """Run (or resume) an evaluation; returns every record in the results file.

    ``backend="ray"`` spreads the questions over ``workers`` Ray actors (a local instance,
    or the cluster at ``ray_address``); the file written is the same either way.
    ``retry_errors`` runs again the questions whose record holds an error (a crashed model
    server, say); without it they count as done, and as errors in the table.
    ``show_progress`` reports on stderr (a bar on a terminal, plain lines elsewhere, and
    "resuming: N of M done"). Ctrl-C raises :class:`EvalInterrupted`, which counts what was
    saved."""
    if backend not in ("local", "ray"):
        raise ValueError(f"unknown eval backend {backend!r}; use local or ray")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with results_lock(out):  # held until the last record is written
        data = load_benchmark(dataset)
        questions = data.questions[:limit] if limit else data.questions
        index = ensure_index(data.corpus, data.name, root=index_root,
                             show_progress=show_progress)
        graph = load_graph(graph_name, index=index, overrides=overrides, cache=cache,
                           cache_path=cache_path)
        settings = EvalSettings(
            graph=graph_name, dataset=dataset, limit=limit, overrides=overrides or [],
            spec_sha=hashlib.sha256(graph.spec.model_dump_json().encode()).hexdigest()[:16],
            model=graph.spec.generator.model, recall_k=recall_k, judge=judge,
        )
        traces_path = out.with_suffix(".traces.jsonl")
        done = open_results(out, settings, restart=restart, retry_errors=retry_errors)
        done_ids = {r["id"] for r in done}
        metric_names = ["em", "f1", f"recall@{recall_k}", "ungrounded", "citation_precision",
                        "abstained"]
        if judge:
            metric_names.append("ungrounded_judge")
        if any("qa_pairs" in q.meta for q in questions):
            metric_names.append("str_em")
        metric_names += [name for name in data.metrics if name not in metric_names]
        todo = [q for q in questions if q.id not in done_ids]
        if backend == "ray" and todo:
            from compose.eval.ray_backend import EvalJob, evaluate_on_ray

            job = EvalJob(graph=_absolute(graph_name), dataset=_absolute_dataset(dataset),
                          overrides=overrides or [], cache=cache,
                          cache_path=_absolute(cache_path) if cache_path else None,
                          index_root=_absolute(index_root) if index_root else None,
                          recall_k=recall_k, judge=judge, metric_names=metric_names)
            results = evaluate_on_ray(todo, job, workers=workers, address=ray_address)
        else:
            results = (evaluate_one(graph, item, recall_k, metric_names, judge)
                       for item in todo)
        wanted = {q.id for q in questions}
        try:
            with open(out, "a", encoding="utf-8") as handle, EvalProgress(
                f"{graph_name} on {data.name}", len(questions), len(questions) - len(todo),
                enabled=show_progress,
            ) as progress:
                for record in results:
                    trace = record.pop("trace")
                    if save_traces:
                        append_line(traces_path, {"id": record["id"],
                                                  "question": record["question"],
                                                  "trace": trace})
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                    done.append(record)
                    progress.advance(failed=bool(record["error"]))
        except KeyboardInterrupt:
            saved = sum(1 for r in done if r["id"] in wanted)
            raise EvalInterrupted(out, saved, len(questions)) from None
        corpus = {p.id: p for p in data.corpus}
        return [rescore(r, corpus, metric_names) for r in done if r["id"] in wanted]


def _absolute(path: str | Path) -> str:
    """A path as workers in other directories (or machines) must see it; names stay names."""
    return str(Path(path).resolve()) if Path(path).exists() else str(path)


def _absolute_dataset(spec: str) -> str:
    name, sep, path = spec.partition(":")
    return f"{name}:{_absolute(path)}" if sep else spec


def rescore(record: dict, corpus: dict, metric_names: list[str]) -> dict:
    """Recompute metrics, so records written by an older version (without ``cited_texts``
    or ``abstained``) are scored like new ones; the corpus supplies cited texts by id."""
    record = dict(record)
    if "cited_texts" not in record:
        record["cited_texts"] = [f"{corpus[c].title} {corpus[c].text}"
                                 for c in record.get("citations", []) if c in corpus]
    if "abstained" not in record:
        record["abstained"] = normalize_answer(record["prediction"]) in ("", UNKNOWN)
    record["metrics"] = compute_metrics(record, metric_names)
    return record



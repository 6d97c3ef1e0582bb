"""The typed eval harness without a model: records keep the results-file format byte for byte,
older records and sidecars stay readable, the config is one definition for every backend, and
the one writer appends durably."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from compose.corpus import Passage
from compose.eval.config import EvalConfig, ResultsMeta
from compose.eval.metrics import compute_metrics
from compose.eval.record import EvalRecord
from compose.eval.report import summarize
from compose.eval.runner import open_results, rescore, run_eval
from compose.eval.writer import ResultsWriter, json_line

# A line as the runner wrote it before EvalRecord existed (hotpotqa, naive_rag; cut short).
LINE = json.dumps({
    "id": "5a7f6fd75542992e7d278cfa", "question": "Which Canadian rock band released "
    "\"Counterparts\"?", "answers": ["Rush"], "gold_ids": ["hotpotqa-913d", "hotpotqa-4e6f"],
    "error": None, "prediction": "Steve", "outputs": {"passages": [
        {"id": "hotpotqa-4b16", "title": "Steve Smith (musician)", "text": "Steven Bruce",
         "score": 0.03252247488101534, "rank": 1}]},
    "citations": ["hotpotqa-4b16"], "abstained": False, "retrieved_ids": ["hotpotqa-4b16"],
    "cited_texts": ["Steve Smith (musician) Steven Bruce – “Steve” Smith"], "llm_calls": 1,
    "tokens_in": 512, "tokens_out": 9, "generator_s": 3.1416, "retriever_s": 0.25,
    "node_latency_s": {"retrieve": 0.2501, "answer": 3.2}, "module_calls": 2,
    "cache_hits": 0, "wall_s": 3.5, "metrics": {"em": 0.0, "f1": 0.0, "recall@5": 0.0,
                                                "ungrounded": 0.0, "citation_precision": 0.0,
                                                "abstained": 0.0}},
    ensure_ascii=False) + "\n"


def test_a_line_written_before_the_model_reads_and_writes_back_byte_for_byte() -> None:
    record = EvalRecord.model_validate(json.loads(LINE))
    assert record.prediction == "Steve" and record.metrics["recall@5"] == 0.0
    assert record.judge_grounded is None and record.qa_pairs is None  # never judged
    assert json_line(record.to_json()) == LINE
    assert compute_metrics(record, list(record.metrics)) == record.metrics


def test_an_older_record_is_filled_in_and_scored_like_a_new_one() -> None:
    old = {"id": "q1", "prediction": "unknown", "answers": ["Caskel"], "citations": ["d1"],
           "retrieved_ids": ["d1"], "gold_ids": ["d1"], "old_key": 7}
    corpus = {"d1": Passage(id="d1", title="Ilse", text="born in Caskel")}
    record = rescore(EvalRecord.model_validate(old), corpus, ["em", "abstained", "ungrounded"])
    assert record.cited_texts == ["Ilse born in Caskel"] and record.abstained is True
    assert record.metrics == {"em": 0.0, "abstained": 1.0, "ungrounded": None}
    assert list(record.to_json()) == ["id", "answers", "gold_ids", "prediction", "citations",
                                      "abstained", "retrieved_ids", "cited_texts", "metrics",
                                      "old_key"]  # only what it held or was given, in order


def test_summary_reads_records_and_their_json_alike() -> None:
    record = EvalRecord.model_validate(json.loads(LINE))
    assert summarize([record]) == summarize([json.loads(LINE)])


def test_one_config_for_every_backend(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.yaml").write_text("name: g\n")
    (tmp_path / "q.jsonl").write_text("")
    config = EvalConfig(graph="g.yaml", dataset="hotpotqa:q.jsonl", out=Path("r.jsonl"),
                        index_root=Path("."), cache_path="missing.sqlite", overrides=None)
    assert config.overrides == [] and config.workers == 1 and config.backend == "local"
    workers = config.for_workers()
    assert workers.graph == str(tmp_path / "g.yaml")
    assert workers.dataset == f"hotpotqa:{tmp_path / 'q.jsonl'}"
    assert workers.index_root == tmp_path and workers.cache_path == "missing.sqlite"
    assert EvalConfig(graph="naive_rag", dataset="demo", out=Path("r.jsonl")).for_workers(
        ).model_dump(include={"graph", "dataset"}) == {"graph": "naive_rag", "dataset": "demo"}
    with pytest.raises(ValidationError, match="unknown eval backend 'spark'; use local or ray"):
        EvalConfig(graph="g", dataset="demo", out=Path("r.jsonl"), backend="spark")
    with pytest.raises(ValidationError, match="extra"):
        run_eval("g", "demo", out="r.jsonl", recal_k=5)


def test_a_sidecar_written_before_the_model_still_matches(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_text(LINE)
    out.with_suffix(".meta.json").write_text(json.dumps({
        "graph": "naive_rag", "dataset": "demo", "limit": 20, "overrides": [],
        "spec_sha": "25c1cccfee7c06f6", "model": "smollm2-135m", "recall_k": 5,
        "judge": False}, indent=2))
    meta = ResultsMeta(graph="naive_rag", dataset="demo", limit=40, spec_sha="25c1cccfee7c06f6",
                       model="smollm2-135m")
    done = open_results(out, meta, restart=False, retry_errors=False)
    assert [r["id"] for r in done] == ["5a7f6fd75542992e7d278cfa"]
    assert ResultsMeta.model_validate_json(out.with_suffix(".meta.json").read_text()) == meta


def test_the_writer_appends_each_record_and_its_trace(tmp_path: Path) -> None:
    out, traces = tmp_path / "r.jsonl", tmp_path / "r.traces.jsonl"
    record = EvalRecord.model_validate(json.loads(LINE))
    with ResultsWriter(out, None) as writer:
        writer.write(record, [])
    assert out.read_text() == LINE and not traces.exists()
    with ResultsWriter(out, traces) as writer:
        writer.write(record, [{"node": "answer"}])
    assert out.read_text() == LINE * 2
    assert json.loads(traces.read_text()) == {"id": record.id, "question": record.question,
                                              "trace": [{"node": "answer"}]}

"""The evaluation runner: records, errors kept, resume after a kill, refused mixed resumes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from rich.console import Console

from compose.api import load_graph
from compose.corpus import QAItem
from compose.eval.progress import EvalProgress
from compose.eval.question import evaluate_one
from compose.eval.report import summarize, summary_table
from compose.eval.results_file import read_done
from compose.eval.runner import ResumeMismatchError, run_eval
from tests.conftest import scripted_runtime


def test_torn_last_line_is_cut_off(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "predic')
    assert [r["id"] for r in read_done(path)] == ["a", "b"]
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n'


def test_complete_line_without_newline_is_redone(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}')
    assert [r["id"] for r in read_done(path)] == ["a"]


def test_failed_question_is_recorded_not_dropped(demo_index):
    graph = load_graph("naive_rag", runtime=scripted_runtime(["garbage"] * 3, demo_index))
    item = QAItem(id="q1", question="Who designed the Velmora Bridge?", answers=["Ilse Ranneth"],
                  gold_ids=["demo-025"])
    record = evaluate_one(graph, item, 5, ["em", "f1", "recall@5"])
    assert record["error"].startswith("NodeError")
    assert record["metrics"]["em"] == 0.0
    assert record["prediction"] == ""


def test_record_has_metrics_cost_and_retrieval(demo_index):
    runtime = scripted_runtime([{"answer": "Ilse Ranneth", "citations": [1]}], demo_index)
    graph = load_graph("naive_rag", runtime=runtime)
    item = QAItem(id="q1", question="Who designed the Velmora Bridge?", answers=["Ilse Ranneth"],
                  gold_ids=["demo-025", "demo-023"])
    record = evaluate_one(graph, item, 5, ["em", "f1", "recall@5"])
    assert record["metrics"]["em"] == 1.0
    assert record["metrics"]["recall@5"] in (0.5, 1.0)
    assert record["retrieved_ids"][0] == "demo-025"
    assert record["llm_calls"] == 1 and record["tokens_in"] > 0
    assert set(record["node_latency_s"]) == {"retrieve", "answer"}


def test_summary_averages_and_counts_errors():
    records = [
        {"metrics": {"em": 1.0, "recall@5": None}, "llm_calls": 1, "tokens_in": 100,
         "tokens_out": 10, "wall_s": 2.0, "module_calls": 2, "cache_hits": 1,
         "node_latency_s": {"a": 3.0, "b": 1.0}, "error": None},
        {"metrics": {"em": 0.0, "recall@5": 0.5}, "llm_calls": 3, "tokens_in": 300,
         "tokens_out": 30, "wall_s": 4.0, "module_calls": 2, "cache_hits": 0,
         "node_latency_s": {"a": 0.0, "b": 0.0}, "error": "boom"},
    ]
    summary = summarize(records)
    assert summary.metrics == {"em": 0.5, "recall@5": 0.5}
    assert (summary.llm_calls, summary.tokens_in, summary.wall_s) == (2.0, 200.0, 3.0)
    assert summary.errors == 1 and summary.cache_hit_rate == 0.25
    assert summary.node_share == {"a": 0.75, "b": 0.25}


def test_summary_table_says_how_many_answers_cited():
    """A precision of 1.000 over the one answer of three that cited anything must say so."""
    records = [
        {"citations": ["demo-025"], "metrics": {"citation_precision": 1.0}},
        {"citations": [], "metrics": {"citation_precision": None}},
        {"citations": [], "metrics": {"citation_precision": None}, "error": "boom"},
    ]
    summary = summarize(records)
    assert summary.cited == 1
    console = Console(file=io.StringIO(), width=100)
    console.print(summary_table("g on d", summary))
    assert "1.000 (cited 1/3)" in console.file.getvalue()


def test_progress_is_plain_lines_off_a_terminal():
    stream = io.StringIO()
    with EvalProgress("g on d", total=4, done=1, enabled=True,
                      console=Console(file=stream, width=200)) as progress:
        for failed in (False, True, False):
            progress.advance(failed=failed)
    lines = [line.rsplit(",", 1)[0] for line in stream.getvalue().splitlines()]
    assert lines == ["resuming: 1 of 4 done", "g on d: 2/4 done", "g on d: 3/4 done, 1 error(s)",
                     "g on d: 4/4 done, 1 error(s)"]


def test_progress_lines_are_a_tenth_of_a_long_run_apart():
    stream = io.StringIO()
    with EvalProgress("g", total=100, done=0, enabled=True,
                      console=Console(file=stream, width=200)) as progress:
        for _ in range(100):
            progress.advance()
    assert [line.split(",")[0] for line in stream.getvalue().splitlines()] == [
        f"g: {n}/100 done" for n in range(10, 101, 10)]


def test_progress_on_a_terminal_is_a_bar_and_silent_when_disabled():
    stream = io.StringIO()
    with EvalProgress("g", total=2, done=1, enabled=True,
                      console=Console(file=stream, force_terminal=True, width=100)) as progress:
        progress.advance()
    shown = stream.getvalue()
    assert "resuming: 1 of 2 done" in shown and "2/2" in shown and "done," not in shown
    quiet = io.StringIO()
    with EvalProgress("g", total=2, done=1, enabled=False,
                      console=Console(file=quiet)) as progress:
        progress.advance()
    assert quiet.getvalue() == ""


def eval_command(out, index_root, limit):
    return [sys.executable, "-m", "compose.cli", "eval", "closed_book", "--dataset", "demo",
            "--limit", str(limit), "--out", str(out), "--no-cache",
            "--index-root", str(index_root)]


def test_resume_after_kill_loses_and_repeats_nothing(tmp_path, demo_index):
    out = tmp_path / "results.jsonl"
    process = subprocess.Popen(eval_command(out, demo_index.parent, 8),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline:
        if out.exists() and out.read_text().count("\n") >= 2:
            break
        if process.poll() is not None:
            pytest.fail(f"eval ended early: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = out.read_text()
    done_before = [json.loads(line)["id"] for line in before.splitlines() if line.endswith("}")]
    assert 2 <= len(done_before) < 8, "the kill should land mid-run"

    finished = subprocess.run(eval_command(out, demo_index.parent, 8), capture_output=True,
                              text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    after = out.read_text()
    ids = [json.loads(line)["id"] for line in after.splitlines()]
    assert len(ids) == len(set(ids)) == 8
    assert ids[: len(done_before)] == done_before  # earlier results kept as they were
    assert after.startswith("\n".join(before.splitlines()[: len(done_before)]))
    assert "questions" in finished.stdout and "em" in finished.stdout


def test_resume_with_other_settings_is_refused(tmp_path, demo_index):
    out = tmp_path / "results.jsonl"
    run_eval("closed_book", "demo", out=out, limit=1, cache=False,
             index_root=demo_index.parent, show_progress=False)
    with pytest.raises(ResumeMismatchError, match="--restart"):
        run_eval("closed_book", "demo", out=out, limit=1, cache=False,
                 index_root=demo_index.parent, show_progress=False,
                 overrides=["nodes.answer.params.max_passages=2"])
    records = run_eval("closed_book", "demo", out=out, limit=1, cache=False, restart=True,
                       index_root=demo_index.parent, show_progress=False,
                       overrides=["nodes.answer.params.max_passages=2"])
    assert len(records) == 1


def test_cache_makes_a_rerun_free(tmp_path, demo_index):
    kwargs = {"limit": 2, "cache": True, "cache_path": str(tmp_path / "cache.sqlite"),
              "index_root": demo_index.parent, "show_progress": False}
    first = run_eval("naive_rag", "demo", out=tmp_path / "a.jsonl", **kwargs)
    second = run_eval("naive_rag", "demo", out=tmp_path / "b.jsonl", **kwargs)
    assert [r["prediction"] for r in first] == [r["prediction"] for r in second]
    assert all(r["cache_hits"] == 0 for r in first)
    assert all(r["cache_hits"] == 2 for r in second)
    # the cost columns report what the method costs; the time columns what was really spent
    assert [r["llm_calls"] for r in second] == [r["llm_calls"] for r in first] == [1, 1]
    assert [r["tokens_in"] for r in second] == [r["tokens_in"] for r in first]
    assert all(r["generator_s"] == 0 for r in second)
    assert sum(r["wall_s"] for r in second) < sum(r["wall_s"] for r in first)


def test_retry_errors_reruns_only_the_failed_questions(tmp_path, demo_index):
    out = tmp_path / "results.jsonl"
    kwargs = {"limit": 2, "cache": False, "index_root": demo_index.parent,
              "show_progress": False}
    first = run_eval("closed_book", "demo", out=out, **kwargs)
    failed = {**first[0], "error": "NodeError: model server went away", "prediction": ""}
    out.write_text("\n".join(json.dumps(r) for r in [failed, first[1]]) + "\n")

    kept = run_eval("closed_book", "demo", out=out, **kwargs)
    assert [r["error"] for r in kept] == [failed["error"], None]  # errors count as done

    retried = run_eval("closed_book", "demo", out=out, retry_errors=True, **kwargs)
    assert [r["id"] for r in retried] == [first[1]["id"], first[0]["id"]]
    assert all(r["error"] is None for r in retried)
    assert retried[1]["prediction"] == first[0]["prediction"]
    assert len(out.read_text().splitlines()) == 2


def test_ctrl_c_says_what_is_saved_and_the_resume_says_so_too(tmp_path, demo_index):
    """SIGINT mid-run: exit 130 with the count on disk and how to go on; the same command
    then reports the resume and, its stderr being a pipe, plain progress lines."""
    out = tmp_path / "results.jsonl"
    process = subprocess.Popen(eval_command(out, demo_index.parent, 4), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        if out.exists() and out.read_text().count("\n") >= 2:
            break
        if process.poll() is not None:
            pytest.fail(f"eval ended early: {process.stderr.read()[-2000:]}")
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    saved = out.read_text().count("\n")
    assert process.returncode == 130, stderr[-2000:]
    assert 2 <= saved < 4, "the interrupt should land mid-run"
    assert f"interrupted: {saved} of 4 results saved in {out}" in " ".join(stderr.split())
    assert "run the same command again to resume" in " ".join(stderr.split())
    assert "Traceback" not in stderr

    finished = subprocess.run(eval_command(out, demo_index.parent, 4), capture_output=True,
                              text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"resuming: {saved} of 4 done" in finished.stderr
    assert "closed_book on demo: 4/4 done" in finished.stderr
    assert "(cited" in finished.stdout

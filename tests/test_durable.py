"""Durable runs on a real SQLite checkpoint: resume after a failure without repeating finished
nodes, loop budgets that hold across a resume, and pauses for approval."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from compose.api import load_graph
from compose.cli import app
from compose.durable import sqlite_checkpointer
from tests.conftest import retry_spec, scripted_runtime

UNKNOWN = {"answer": "unknown", "citations": []}
KNOWN = {"answer": "Doran Vesk", "citations": [1]}


def failing_after(replies: list[dict]):
    """Scripted replies that end in a crash, as a model server that goes away would."""
    remaining = list(replies)

    def reply(messages):
        if not remaining:
            raise ConnectionError("model server went away")
        return remaining.pop(0)
    return reply


def nodes_run(state: dict) -> list[str]:
    return [event["node"] for event in state["trace"]]


def test_resume_after_failure_skips_finished_nodes_and_keeps_budget(tmp_path, demo_index):
    db = tmp_path / "runs.sqlite"
    crashing = scripted_runtime(failing_after([UNKNOWN]), demo_index)
    graph = load_graph(retry_spec(budget=2), runtime=crashing,
                       checkpointer=sqlite_checkpointer(db))
    with pytest.raises(Exception, match="model server went away"):
        graph.invoke({"question": "Who invented the kelp-oil lamp?"}, thread_id="t1")
    saved = graph.checkpoint("t1")
    assert nodes_run(saved.values) == ["retrieve", "answer", "retrieve"]
    assert saved.next == ("answer",)

    # A new process: fresh graph, fresh connection, a model that answers "unknown" forever.
    stubborn = scripted_runtime(lambda messages: UNKNOWN, demo_index)
    resumed = load_graph(retry_spec(budget=2), runtime=stubborn,
                         checkpointer=sqlite_checkpointer(db))
    state = resumed.resume("t1")
    # One loop was spent before the crash, so only one more retry is allowed after it.
    assert nodes_run(state) == ["retrieve", "answer", "retrieve", "answer", "retrieve", "answer"]
    assert len(stubborn.generator.calls) == 2
    assert resumed.checkpoint("t1").next == ()


def test_pause_before_node_until_resumed(tmp_path, demo_index):
    runtime = scripted_runtime(lambda messages: KNOWN, demo_index)
    graph = load_graph("naive_rag", runtime=runtime, interrupt_before=["answer"],
                       checkpointer=sqlite_checkpointer(tmp_path / "runs.sqlite"))
    paused = graph.invoke({"question": "Who invented the kelp-oil lamp?"}, thread_id="t")
    assert nodes_run(paused) == ["retrieve"] and "answer" not in paused
    assert graph.checkpoint("t").next == ("answer",)
    assert runtime.generator.calls == []
    state = graph.resume("t")
    assert state["answer"] == "Doran Vesk" and nodes_run(state) == ["retrieve", "answer"]


def test_durability_arguments_are_checked(tmp_path, demo_index):
    runtime = scripted_runtime(lambda messages: KNOWN, demo_index)
    with pytest.raises(ValueError, match="no node"):
        load_graph("naive_rag", runtime=runtime, interrupt_before=["anwser"],
                   checkpointer=sqlite_checkpointer(tmp_path / "a.sqlite"))
    with pytest.raises(ValueError, match="needs a checkpointer"):
        load_graph("naive_rag", runtime=runtime, interrupt_before=["answer"])
    graph = load_graph("naive_rag", runtime=runtime,
                       checkpointer=sqlite_checkpointer(tmp_path / "b.sqlite"))
    with pytest.raises(ValueError, match="no saved run"):
        graph.resume("never-started")


def test_cli_pauses_for_approval_then_resumes_with_the_real_model(tmp_path, demo_index):
    runner = CliRunner()
    db = str(tmp_path / "runs.sqlite")
    common = ["run", "naive_rag", "--index", str(demo_index), "--checkpoint", db,
              "--thread-id", "lamp"]
    refused = runner.invoke(app, [*common, "-q", "Who invented the kelp-oil lamp?",
                                  "--approve-before", "answer"], input="n\n")
    assert refused.exit_code == 3, refused.output
    assert "paused before 'answer'" in refused.output

    resumed = runner.invoke(app, [*common, "--approve-before", "answer", "--yes"])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming thread lamp: 1 node(s) done, next: answer" in resumed.output
    assert "answer:" in resumed.output and "1 LLM call(s)" in resumed.output

    again = runner.invoke(app, [*common, "-q", "Another question?"])
    assert again.exit_code == 1 and "answers another question" in again.output


def test_cli_shows_the_tool_call_awaiting_approval_in_the_agent(tmp_path, demo_index):
    result = CliRunner().invoke(app, [
        "run", "medorch", "-q", "Is the kelp-oil lamp visible from the sea?",
        "--index", str(demo_index), "--checkpoint", str(tmp_path / "runs.sqlite"),
        "--thread-id", "agent", "--approve-before", "execute"], input="n\n")
    assert result.exit_code == 3, result.output
    assert "paused before 'execute' (module execute_tool)" in result.output
    assert '"name": "evidence_search"' in result.output  # the agent's first step is fixed
    assert "run node 'execute'?" in result.output

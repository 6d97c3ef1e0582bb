"""Durable runs on a real SQLite checkpoint: resume after a failure without repeating finished
nodes, loop budgets that hold across a resume, pauses for approval, and one run at a time
per thread."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading

import pytest
from typer.testing import CliRunner

from compose.api import load_graph
from compose.cli.main import app
from compose.durable import ThreadBusyError, holding_thread, sqlite_checkpointer
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


HOLDER = """
import sys
from compose.durable import sqlite_checkpointer
with sqlite_checkpointer(sys.argv[1]).hold("t1"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def holder_process(db) -> subprocess.Popen:
    """Another process holding thread t1 of ``db`` until it reads a line (or is killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_thread_another_process_runs_is_refused_naming_its_pid(tmp_path):
    db = tmp_path / "runs.sqlite"
    holder = holder_process(db)
    saver = sqlite_checkpointer(db)
    try:
        busy = rf"thread 't1' of .*runs.sqlite is being run by PID {holder.pid} \(lock "
        with pytest.raises(ThreadBusyError, match=busy), saver.hold("t1"):
            pytest.fail("two runs held one thread")
        with saver.hold("t2"):  # other threads of the same file are free
            pass
    finally:
        holder.communicate("done\n", timeout=30)
    with saver.hold("t1"):  # released when the holder finished
        pass


def test_a_killed_holder_leaves_its_thread_free(tmp_path):
    db = tmp_path / "runs.sqlite"
    holder = holder_process(db)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with sqlite_checkpointer(db).hold("t1"):
        pass


def blocking_model():
    """A scripted model that signals ``in_model`` when called and answers once ``release``
    is set, so a test can act while a run is inside its model call."""
    in_model, release = threading.Event(), threading.Event()

    def blocking(messages):
        in_model.set()
        assert release.wait(30)
        return KNOWN

    return in_model, release, blocking


def test_two_runs_of_one_thread_do_not_both_run_its_nodes(tmp_path, demo_index):
    """Two graphs on one checkpoint file (two connections, as two processes have), one
    thread id: the second run is refused while the first is inside its model call."""
    db = tmp_path / "runs.sqlite"
    in_model, release, blocking = blocking_model()

    first_saver, second_saver = sqlite_checkpointer(db), sqlite_checkpointer(db)
    first = load_graph("naive_rag", runtime=scripted_runtime(blocking, demo_index),
                       checkpointer=first_saver)
    second_runtime = scripted_runtime(lambda messages: KNOWN, demo_index)
    second = load_graph("naive_rag", runtime=second_runtime, checkpointer=second_saver)
    states: list[dict] = []

    def run_first() -> None:
        with holding_thread(first_saver, "lamp"):
            states.append(first.invoke({"question": "Who invented the kelp-oil lamp?"},
                                       thread_id="lamp"))

    runner = threading.Thread(target=run_first)
    runner.start()
    try:
        assert in_model.wait(30)
        busy = rf"PID {os.getpid()} \(this process\)"
        with pytest.raises(ThreadBusyError, match=busy), holding_thread(second_saver, "lamp"):
            second.invoke({"question": "Who invented the kelp-oil lamp?"}, thread_id="lamp")
    finally:
        release.set()
        runner.join(30)
    assert nodes_run(states[0]) == ["retrieve", "answer"]
    assert second_runtime.generator.calls == []
    with holding_thread(second_saver, "lamp"):  # free again; the run is saved, not redone
        assert second.checkpoint("lamp").next == ()


def test_the_holding_thread_may_take_its_lock_again(tmp_path):
    saver = sqlite_checkpointer(tmp_path / "runs.sqlite")
    refusals: list[BaseException] = []

    def other_thread() -> None:
        try:
            with saver.hold("t"):
                pass
        except ThreadBusyError as exc:
            refusals.append(exc)

    with saver.hold("t"), saver.hold("t"):  # nested, as invoke inside a caller's hold
        probe = threading.Thread(target=other_thread)
        probe.start()
        probe.join(30)
    assert len(refusals) == 1
    with saver.hold("t"):  # both levels released
        pass
    with holding_thread(saver, None), holding_thread(object(), "t"):
        pass  # no thread id, or a checkpointer without locks: nothing to hold


def test_two_tasks_on_one_event_loop_do_not_share_a_hold(tmp_path):
    saver = sqlite_checkpointer(tmp_path / "runs.sqlite")

    async def run(inside: asyncio.Event, leave: asyncio.Event) -> None:
        with saver.hold("t"):
            inside.set()
            await leave.wait()

    async def main() -> str:
        inside, leave = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(run(inside, leave))
        await inside.wait()
        try:
            await run(asyncio.Event(), leave)
        except ThreadBusyError as exc:
            return str(exc)
        finally:
            leave.set()
            await first
        return "not refused"

    assert "this process" in asyncio.run(main())


def test_a_graph_run_holds_its_thread(tmp_path, demo_index):
    """ComposeGraph's runs hold their thread themselves: a second invoke, resume or stream
    of the thread while the first is in its model call is refused; it then runs normally."""
    db = tmp_path / "runs.sqlite"
    in_model, release, blocking = blocking_model()

    first = load_graph("naive_rag", runtime=scripted_runtime(blocking, demo_index),
                       checkpointer=sqlite_checkpointer(db))
    second_runtime = scripted_runtime(lambda messages: KNOWN, demo_index)
    second = load_graph("naive_rag", runtime=second_runtime,
                        checkpointer=sqlite_checkpointer(db))
    question = {"question": "Who invented the kelp-oil lamp?"}
    states: list[dict] = []
    runner = threading.Thread(target=lambda: states.append(first.invoke(question,
                                                                        thread_id="lamp")))
    runner.start()
    try:
        assert in_model.wait(30)
        for attempt in (lambda: second.invoke(question, thread_id="lamp"),
                        lambda: second.resume("lamp"),
                        lambda: list(second.stream(question,
                                                   {"configurable": {"thread_id": "lamp"}}))):
            with pytest.raises(ThreadBusyError, match="is being run by PID"):
                attempt()
    finally:
        release.set()
        runner.join(30)
    assert nodes_run(states[0]) == ["retrieve", "answer"]
    assert second_runtime.generator.calls == []
    assert second.invoke(question, thread_id="other")["answer"] == "Doran Vesk"

"""Compiled graphs: data flow through state, traces, conditional routing and loop budgets.

These use a scripted generator (control flow only) over the real demo index.
"""

from __future__ import annotations

import pytest

from compose.api import load_graph
from compose.graph.compiler import NodeError
from tests.conftest import retry_spec, scripted_runtime


def test_naive_rag_passes_retrieved_passages_to_answer(demo_index):
    runtime = scripted_runtime([{"answer": "Ilse Ranneth", "citations": [1, 9]}], demo_index)
    graph = load_graph("naive_rag", runtime=runtime)
    state = graph.invoke({"question": "Who designed the Velmora Bridge?"})
    passages = state["passages"]
    assert passages[0]["title"] == "Velmora Bridge"
    prompt = runtime.generator.calls[0][-1].content
    assert "[1] Velmora Bridge:" in prompt and "Who designed the Velmora Bridge?" in prompt
    assert state["answer"] == "Ilse Ranneth"
    assert state["citations"] == [passages[0]["id"]]  # label 9 pointed at no passage
    assert [e["node"] for e in state["trace"]] == ["retrieve", "answer"]
    assert state["trace"][1]["llm_calls"] == 1 and state["trace"][0]["llm_calls"] == 0


def test_loop_budget_bounds_retries(demo_index):
    runtime = scripted_runtime(lambda messages: {"answer": "unknown", "citations": []},
                               demo_index)
    state = load_graph(retry_spec(budget=2), runtime=runtime).invoke(question="Who?")
    nodes = [e["node"] for e in state["trace"]]
    assert nodes == ["retrieve", "answer"] * 3
    assert len(runtime.generator.calls) == 3
    assert [e["route"] for e in state["trace"] if e["node"] == "answer"] == [
        "retrieve", "retrieve", "END"]


def test_loop_exits_as_soon_as_condition_fails(demo_index):
    replies = [{"answer": "unknown", "citations": []}, {"answer": "Caskel", "citations": [1]}]
    runtime = scripted_runtime(replies, demo_index)
    state = load_graph(retry_spec(budget=5), runtime=runtime).invoke(question="Where?")
    assert state["answer"] == "Caskel"
    assert len(runtime.generator.calls) == 2


def test_missing_and_unknown_inputs_are_clear_errors():
    graph = load_graph("closed_book", runtime=scripted_runtime([]))
    with pytest.raises(ValueError, match="needs input"):
        graph.invoke({})
    with pytest.raises(ValueError, match="has no input"):
        graph.invoke({"question": "q", "qestion": "typo"})


def test_module_failure_names_node_and_module():
    runtime = scripted_runtime(["not json at all"] * 5)
    graph = load_graph("closed_book", runtime=runtime)
    with pytest.raises(NodeError, match="node 'answer' \\(module 'answer'\\) failed"):
        graph.invoke(question="q")
    assert len(runtime.generator.calls) == 3  # first try + 2 parse retries


def test_stream_yields_each_node_update(demo_index):
    runtime = scripted_runtime([{"answer": "x", "citations": []}], demo_index)
    graph = load_graph("naive_rag", runtime=runtime)
    updates = list(graph.stream({"question": "Velmora Bridge"}))
    assert [next(iter(u)) for u in updates] == ["retrieve", "answer"]


def test_compiled_langgraph_object_is_exposed():
    graph = load_graph("closed_book", runtime=scripted_runtime([]))
    drawn = graph.graph.get_graph()
    assert "answer" in drawn.nodes

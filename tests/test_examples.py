"""The documented embedding examples in examples/ run as written, with the real model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pydantic import ValidationError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUESTION = "Who invented the kelp-oil lamp?"


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_pipeline(demo_index):
    outputs = example("python_pipeline").main(QUESTION, demo_index)
    assert set(outputs) == {"answer", "citations", "grounded", "reason"}
    assert outputs["answer"].strip() and isinstance(outputs["grounded"], bool)


def test_subgraph_inside_another_state_graph(demo_index):
    state = example("subgraph").main("  who invented the kelp-oil lamp  ", demo_index)
    assert state["question"] == "Who invented the kelp-oil lamp?"  # the host's node ran first
    assert state["reply"].startswith(state["answer"])  # ...and its last node read rag's output
    assert "trace" not in state and "_route" not in state  # composerag internals stay inside


def test_langchain_tool_validates_and_answers(demo_index):
    module = example("langchain_tool")
    tool = module.make_tool(demo_index)
    assert tool.name == "search_lighthouse_docs"
    assert tool.tool_call_schema.model_json_schema()["required"] == ["question"]
    with pytest.raises(ValidationError):
        tool.invoke({"query": QUESTION})
    result = module.main(QUESTION, demo_index)
    assert result["answer"].strip()
    assert set(result["citations"]) <= {p["id"] for p in result["passages"]}


def test_streaming_reports_each_node_as_it_finishes(demo_index):
    seen = example("streaming").main(QUESTION, demo_index)
    assert [node for node, _, _ in seen] == ["retrieve", "answer"]
    assert seen[0][1] == ["passages"]
    assert "answer" in seen[1][1] and all(latency >= 0 for _, _, latency in seen)

"""The composerag command line, end to end (real model and real index where it runs)."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from compose.cli.main import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_validate_shipped_graphs():
    result = invoke("validate", "naive_rag", "closed_book")
    assert result.exit_code == 0
    assert "ok naive_rag" in result.output and "ok closed_book" in result.output


def test_validate_reports_file_line_and_fails(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: g\nentry: a\nnodes:\n  a:\n    module: anwser\nedges:\n"
                   "  - {from: a, to: END}\n")
    result = invoke("validate", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:5: nodes.a.module: unknown module 'anwser'" in result.output.replace("\n", "")


def test_validate_with_bad_override_fails():
    result = invoke("validate", "naive_rag", "--set", "nodes.retrieve.params.k=0")
    assert result.exit_code == 1


def test_schema_is_json_schema():
    schema = json.loads(invoke("schema").output)
    assert schema["title"] == "GraphSpec" and "nodes" in schema["properties"]


def test_modules_json_lists_schemas():
    described = {m["name"]: m for m in json.loads(invoke("modules", "--json").output)}
    assert {"answer", "retrieve"} <= set(described)
    assert "question" in described["answer"]["input"]["properties"]
    assert described["answer"]["prompt_version"] == "answer-v1"
    assert "k" in described["retrieve"]["params"]["properties"]


def test_show_prints_mermaid():
    result = invoke("show", "naive_rag")
    assert result.output.startswith("flowchart TD")
    assert "retrieve --> answer" in result.output


def test_graphs_lists_shipped():
    assert "naive_rag" in invoke("graphs").output


def test_index_build_and_info(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"p{i}", "title": "T", "text": f"boat {i}"})
                              + "\n" for i in range(4)))
    result = invoke("index", "build", str(corpus), str(tmp_path / "idx"), "--type", "hnsw")
    assert result.exit_code == 0 and "4 passages, hnsw" in " ".join(result.output.split())
    info = json.loads(invoke("index", "info", str(tmp_path / "idx")).output)
    assert info["count"] == 4 and info["index_type"] == "hnsw"


def test_index_build_rejects_bad_corpus(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": "x"}\n{"id": broken\n')
    result = invoke("index", "build", str(corpus), str(tmp_path / "idx"))
    assert result.exit_code == 1 and "c.jsonl:2" in result.output


def test_module_run_retrieve(demo_index):
    result = invoke("module", "run", "retrieve", "--input", '{"query": "kelp-oil lamp"}',
                    "--params", '{"k": 2}', "--index", str(demo_index))
    data = json.loads(result.output)
    assert len(data["output"]["passages"]) == 2
    assert data["stats"]["llm_calls"] == 0


def test_module_run_unknown_module():
    result = invoke("module", "run", "retreive", "--input", "{}")
    assert result.exit_code == 1 and "did you mean retrieve" in result.output


def test_run_naive_rag_with_real_model_prints_answer_and_writes_trace(demo_index, tmp_path):
    trace = tmp_path / "trace.jsonl"
    result = invoke("run", "naive_rag", "-q", "Who invented the kelp-oil lamp?",
                    "--index", str(demo_index), "--trace", str(trace))
    assert result.exit_code == 0
    assert "answer:" in result.output and "Kelp-oil lamp" in result.output
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [e["node"] for e in events] == ["retrieve", "answer"]
    assert events[1]["llm_calls"] >= 1


def test_run_json_output(demo_index):
    result = invoke("run", "closed_book", "-q", "What is the capital of France?", "--json")
    assert "Paris" in json.loads(result.output)["answer"]


def test_show_png_when_graphviz_is_installed(tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("graphviz `dot` is not installed (scripts/setup.sh installs it as root)")
    png = tmp_path / "g.png"
    result = invoke("show", "naive_rag", "--png", str(png))
    assert result.exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_serve_needs_exactly_one_protocol():
    for flags in ([], ["--http", "--mcp"]):
        result = invoke("serve", "naive_rag", *flags)
        assert result.exit_code == 1 and "exactly one of --http or --mcp" in result.output
    result = invoke("serve", "naive_rag", "--mcp", "--transport", "carrier-pigeon")
    assert result.exit_code == 1 and "unknown MCP transport" in result.output


def test_run_durability_flags_need_a_checkpoint():
    result = invoke("run", "naive_rag", "-q", "q", "--thread-id", "t1")
    assert result.exit_code == 1 and "need --checkpoint" in result.output


def test_run_stream_prints_the_same_answer_as_a_plain_run(demo_index):
    question = ["-q", "Who invented the kelp-oil lamp?", "--index", str(demo_index), "--json"]
    plain = json.loads(invoke("run", "naive_rag", *question).stdout)
    streamed = invoke("run", "naive_rag", *question, "--stream")
    assert streamed.exit_code == 0, streamed.output
    assert json.loads(streamed.stdout) == plain  # the tokens went to stderr with --json
    assert plain["answer"] in streamed.stderr


def test_serve_refuses_a_remote_bind_without_an_api_key(monkeypatch):
    monkeypatch.delenv("COMPOSERAG_API_KEY", raising=False)
    result = invoke("serve", "naive_rag", "--http", "--host", "0.0.0.0")
    assert result.exit_code == 1 and "--api-key" in result.output


def test_eval_compare_is_a_subcommand_beside_eval_graph(tmp_path):
    result = invoke("eval", "compare", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"))
    assert result.exit_code == 1 and "no results file" in result.output
    result = invoke("eval", "no-such-graph", "--dataset", "demo")
    assert result.exit_code == 1 and "no-such-graph" in result.output

"""The tool registry and executor: signature -> argument model, allow-list, validation errors
as observations, timeout, result size cap, result models, graph-as-tool, and the decision
parser/schema."""

from __future__ import annotations

import json
import threading
import time
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from compose.config import RetrieverConfig, RuntimeConfig
from compose.graph_tool import graph_tool
from compose.runtime import ModuleContext, Runtime
from compose.tools.execute import ToolCall, cap_text, execute_call
from compose.tools.parse import decision_schema, parse_decision
from compose.tools.registry import check_tool_names, get_tool, list_tools, tool
from tests.conftest import scripted_runtime

RAN: list[str] = []


@tool(timeout_s=5.0)
def t_echo(text: Annotated[str, Field(max_length=50)], times: int = 1,
           mode: Literal["upper", "lower"] = "lower") -> str:
    """Echo text.

    Second paragraph, not part of the description."""
    RAN.append("t_echo")
    return (text.upper() if mode == "upper" else text.lower()) * times


@tool(timeout_s=0.2)
def t_sleep(seconds: float) -> str:
    """Sleep, then say so."""
    time.sleep(seconds)
    return "woke up"


@tool(max_result_chars=100)
def t_big(n: int) -> str:
    """Return a long string."""
    return "x" * n


@tool()
def t_boom(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


class Pair(BaseModel):
    a: int
    b: int


@tool(result=Pair)
def t_bad_result(a: int) -> dict:
    """Returns something its result model rejects."""
    return {"a": a}


@tool()
def t_dangerous(command: str) -> str:
    """A registered tool that no test graph allows; records whether it ever ran."""
    RAN.append("t_dangerous")
    return "ran " + command


@tool()
def t_stats(ctx: ModuleContext, query: str) -> str:
    """Reads the calling node's context."""
    return f"{query}:{ctx.runtime.config.retriever.k}"


def test_decorator_builds_argument_model_from_signature():
    entry = get_tool("t_echo")
    assert entry.description == "Echo text."
    schema = entry.args_schema()
    assert schema["required"] == ["text"]
    assert schema["properties"]["mode"]["enum"] == ["upper", "lower"]
    assert schema["additionalProperties"] is False
    assert entry.signature_line() == "t_echo(text: string, times: integer, mode: string)"
    assert t_echo("Hi") == "hi"  # the decorated function stays callable


def test_context_parameter_is_injected_not_an_argument():
    entry = get_tool("t_stats")
    assert entry.context_param == "ctx"
    assert list(entry.args_schema()["properties"]) == ["query"]
    ctx = Runtime(RuntimeConfig(retriever=RetrieverConfig(k=7))).context()
    obs = execute_call(ToolCall(name="t_stats", arguments={"query": "q"}), ["t_stats"], ctx)
    assert obs.result == "q:7"


def test_registry_rejects_untyped_arguments_and_name_clashes():
    def untyped(x):
        return x

    with pytest.raises(TypeError, match="no type annotation"):
        tool("t_untyped")(untyped)

    def undocumented(text: str) -> str:
        return text

    with pytest.raises(TypeError, match="needs a description"):
        tool("t_undocumented")(undocumented)

    def other(text: str) -> str:
        """Another function."""
        return text

    with pytest.raises(ValueError, match="already registered"):
        tool("t_echo")(other)
    with pytest.raises(KeyError, match="did you mean t_echo"):
        get_tool("t_ecko")
    with pytest.raises(ValueError, match="listed twice"):
        check_tool_names(["t_echo", "t_echo"])


def test_builtin_medical_tools_are_registered():
    assert {"evidence_search", "bmi", "egfr_ckd_epi_2021", "cha2ds2_vasc", "cockcroft_gault",
            "convert_lab_unit"} <= set(list_tools())


def test_valid_call_runs_and_reports_latency():
    obs = execute_call(ToolCall(name="t_echo", arguments={"text": "Ab", "times": 2}), ["t_echo"])
    assert (obs.valid, obs.ok, obs.result, obs.error) == (True, True, "abab", None)
    assert obs.arguments == {"text": "Ab", "times": 2, "mode": "lower"}
    assert obs.latency_s >= 0


def test_tool_outside_allow_list_never_runs_even_if_registered():
    RAN.clear()
    obs = execute_call(ToolCall(name="t_dangerous", arguments={"command": "rm -rf /"}),
                       allowed=["t_echo"])
    assert not obs.valid and not obs.ok
    assert "not allowed" in obs.error and "t_echo" in obs.error
    assert RAN == []


def test_unregistered_tool_in_allow_list_is_an_observation():
    obs = execute_call(ToolCall(name="no_such_tool", arguments={}), allowed=["no_such_tool"])
    assert not obs.valid and "unknown tool" in obs.error


@pytest.mark.parametrize("arguments", [
    {},                                        # missing required
    {"text": "a", "times": "many"},            # wrong type
    {"text": "a", "mode": "sideways"},         # not in the Literal
    {"text": "a" * 51},                        # over max_length
    {"text": "a", "command": "extra"},         # unknown key
])
def test_validation_errors_become_observations_and_the_tool_does_not_run(arguments):
    RAN.clear()
    obs = execute_call(ToolCall(name="t_echo", arguments=arguments), ["t_echo"])
    assert not obs.valid and not obs.ok
    assert obs.error.startswith("invalid arguments for t_echo")
    assert RAN == []


def test_timeout_is_an_observation_and_does_not_block():
    started = time.perf_counter()
    obs = execute_call(ToolCall(name="t_sleep", arguments={"seconds": 3}), ["t_sleep"])
    assert time.perf_counter() - started < 1.5
    assert obs.valid and not obs.ok
    assert "did not finish within 0.2 s" in obs.error
    fast = execute_call(ToolCall(name="t_sleep", arguments={"seconds": 0}), ["t_sleep"])
    assert fast.ok and fast.result == "woke up"


def test_caller_can_tighten_but_not_loosen_timeout():
    obs = execute_call(ToolCall(name="t_sleep", arguments={"seconds": 0.15}), ["t_sleep"],
                       timeout_s=0.05)
    assert not obs.ok and "0.05 s" in obs.error
    obs = execute_call(ToolCall(name="t_sleep", arguments={"seconds": 0.6}), ["t_sleep"],
                       timeout_s=60)
    assert not obs.ok and "0.2 s" in obs.error


def test_result_is_capped_with_a_marker():
    obs = execute_call(ToolCall(name="t_big", arguments={"n": 5000}), ["t_big"])
    assert obs.ok and len(obs.result) == 100
    assert obs.result.endswith("[truncated 4900 chars]") or "truncated" in obs.result
    small = execute_call(ToolCall(name="t_big", arguments={"n": 5000}), ["t_big"],
                         max_chars=70)
    assert len(small.result) == 70
    assert cap_text("short", 100) == "short"


def test_tool_exception_and_bad_result_become_observations():
    obs = execute_call(ToolCall(name="t_boom", arguments={"reason": "disk full"}), ["t_boom"])
    assert obs.valid and not obs.ok and obs.error == "t_boom failed: RuntimeError: disk full"
    obs = execute_call(ToolCall(name="t_bad_result", arguments={"a": 1}), ["t_bad_result"])
    assert obs.valid and not obs.ok and "invalid result" in obs.error and "b" in obs.error


def test_timed_out_tool_thread_is_a_daemon():
    execute_call(ToolCall(name="t_sleep", arguments={"seconds": 1}), ["t_sleep"])
    lingering = [t for t in threading.enumerate() if t.name == "tool-t_sleep"]
    assert lingering and all(t.daemon for t in lingering)


def test_evidence_search_over_real_index(demo_index):
    ctx = Runtime(RuntimeConfig(retriever=RetrieverConfig(index=str(demo_index)))).context()
    obs = execute_call(ToolCall(name="evidence_search",
                                arguments={"query": "Velmora Bridge designer", "k": 2}),
                       ["evidence_search"], ctx)
    assert obs.ok, obs.error
    hits = json.loads(obs.result)["hits"]
    assert len(hits) == 2 and all(len(h["text"]) <= 503 for h in hits)
    assert any("Velmora" in h["title"] + h["text"] for h in hits)
    assert ctx.stats.retriever_s > 0


def test_a_graph_registered_as_tool_answers_and_counts_its_cost(demo_index):
    graph_tool("closed_book", name="t_closed_book", description="Answer from the model alone.")
    runtime = scripted_runtime([{"answer": "Ilse Ranneth", "citations": []}], index=demo_index)
    ctx = runtime.context()
    obs = execute_call(ToolCall(name="t_closed_book", arguments={"question": "Who?"}),
                       ["t_closed_book"], ctx)
    assert obs.ok, obs.error
    assert json.loads(obs.result) == {"answer": "Ilse Ranneth", "citations": []}
    assert ctx.stats.llm_calls == 1
    bad = execute_call(ToolCall(name="t_closed_book", arguments={"question": ""}),
                       ["t_closed_book"], ctx)
    assert not bad.valid


def test_decision_schema_offers_only_allowed_tools():
    schema = decision_schema(["t_echo", "bmi"], ["yes", "no"])
    names = [o["properties"].get("tool", {}).get("enum") for o in schema["anyOf"]]
    assert names == [["t_echo"], ["bmi"], None]
    assert schema["anyOf"][-1]["properties"]["final_answer"]["enum"] == ["yes", "no"]
    assert "t_dangerous" not in json.dumps(schema)
    final = decision_schema(["t_echo"], None, final_only=True)
    assert "anyOf" not in final and "final_answer" in final["properties"]


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"thought": "t", "tool": "bmi", "arguments": {"weight_kg": 70, "height_m": 1.8}}',
     {"call": {"name": "bmi", "arguments": {"weight_kg": 70, "height_m": 1.8}}}),
    ('Sure! ```json\n{"thought": "t", "final_answer": "Yes."}\n```', {"answer": "yes"}),
    ('{"thought": "t", "final_answer": "perhaps"}', {"error": "final_answer must be one of"}),
    ('{"thought": "t", "tool": "bmi", "arguments": "weight 70"}',
     {"error": "arguments must be a JSON object"}),
    ('{"thought": "t", "tool": "bmi", "final_answer": "yes"}', {"error": "not both"}),
    ('{"thought": "only thinking"}', {"error": "neither"}),
    ("[1, 2]", {"error": "must be a JSON object"}),
    ("no json here", {"error": "not valid JSON"}),
    ('{"thought": "t", "tool": 5}', {"error": "tool must be a tool name"}),
])
def test_parse_decision(raw, expected):
    decision = parse_decision(raw, choices=["yes", "no", "maybe"])
    if "call" in expected:
        assert decision.call.model_dump() == expected["call"] and decision.error is None
    elif "answer" in expected:
        assert decision.answer == expected["answer"] and decision.call is None
    else:
        assert expected["error"] in decision.error
        assert decision.call is None and decision.answer is None
    assert decision.raw == raw


def test_evidence_search_without_an_index_is_an_observation():
    obs = execute_call(ToolCall(name="evidence_search", arguments={"query": "statins"}),
                       ["evidence_search"], Runtime(RuntimeConfig()).context())
    assert obs.valid and not obs.ok
    assert "no index is configured" in obs.error

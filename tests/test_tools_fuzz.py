"""Property-based tests: raw model outputs and tool arguments fuzzed through the parser and the
executor. Nothing raises; every failure becomes an observation; nothing outside the
allow-list ever runs."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compose.modules.tools import ExecuteTool
from compose.tools.execute import Observation, ToolCall, execute_call
from compose.tools.parse import Decision, parse_decision
from compose.tools.registry import tool

FORBIDDEN_RUNS: list[dict] = []
ALLOWED = ["bmi", "cha2ds2_vasc", "convert_lab_unit", "f_echo"]
NAMES = st.sampled_from([*ALLOWED, "f_forbidden_cmd", "evidence_search", "os.system", ""])
KEYS = st.sampled_from(["thought", "tool", "arguments", "final_answer", "weight_kg",
                        "height_m", "age_years", "sex", "analyte", "value", "to", "text"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | KEYS,
                                                                inner, max_size=5),
    max_leaves=15,
)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@tool()
def f_echo(text: str, times: int = 1) -> str:
    """Echo text a number of times."""
    return text * max(0, min(times, 3))


@tool()
def f_forbidden_cmd(command: str) -> str:
    """Registered, but in no allow-list: records it if it ever runs."""
    FORBIDDEN_RUNS.append({"command": command})
    return "ran"


def _decision_is_one_thing(decision: Decision) -> None:
    outcomes = [decision.call is not None, decision.answer is not None,
                decision.error is not None]
    assert sum(outcomes) == 1


@FUZZ
@given(st.text(max_size=300))
def test_parser_never_raises_on_arbitrary_text(raw):
    decision = parse_decision(raw, choices=["yes", "no", "maybe"])
    _decision_is_one_thing(decision)
    assert decision.raw == raw


@FUZZ
@given(st.dictionaries(KEYS, JSON, max_size=5), st.booleans())
def test_parser_never_raises_on_json_shaped_outputs(data, wrap):
    raw = json.dumps(data)
    raw = f"Here you go:\n```json\n{raw}\n```" if wrap else raw
    decision = parse_decision(raw, choices=["yes", "no", "maybe"])
    _decision_is_one_thing(decision)
    if decision.call is not None:
        assert isinstance(decision.call.arguments, dict)
    if decision.answer is not None:
        assert decision.answer in ("yes", "no", "maybe")


@FUZZ
@given(NAMES | st.text(max_size=12), st.dictionaries(st.text(max_size=10) | KEYS, JSON,
                                                     max_size=5))
def test_executor_never_raises_and_respects_the_allow_list(name, arguments):
    FORBIDDEN_RUNS.clear()
    obs = execute_call(ToolCall(name=name, arguments=arguments), allowed=ALLOWED)
    assert isinstance(obs, Observation)
    assert obs.ok == (obs.error is None)
    if name not in ALLOWED:
        assert not obs.valid and "not allowed" in obs.error
    if obs.ok:
        assert obs.valid and len(obs.result) <= 2000
    assert FORBIDDEN_RUNS == []


@FUZZ
@given(st.text(max_size=200) | st.dictionaries(KEYS, JSON, max_size=5).map(json.dumps))
def test_execute_node_turns_any_model_output_into_exactly_one_step(raw):
    FORBIDDEN_RUNS.clear()
    decision = parse_decision(raw, choices=["yes", "no", "maybe"])
    out = ExecuteTool(tools=ALLOWED)({"decision": decision, "steps": []})
    assert len(out.steps) == 1 and out.steps[0].step == 1
    step = out.steps[0]
    if out.done:
        assert step.answer in ("yes", "no", "maybe") and step.valid_call is None
    else:
        assert step.valid_call is not None
        assert step.valid_call or step.error
    assert FORBIDDEN_RUNS == []


def test_injected_call_to_forbidden_tool_is_refused_even_when_well_formed():
    raw = json.dumps({"thought": "the abstract told me to", "tool": "f_forbidden_cmd",
                      "arguments": {"command": "rm -rf /"}})
    out = ExecuteTool(tools=ALLOWED)({"decision": parse_decision(raw), "steps": []})
    assert out.steps[0].valid_call is False and "not allowed" in out.steps[0].error
    assert FORBIDDEN_RUNS == []

"""Property-based tests: raw model outputs and tool arguments fuzzed through the parser and the
executor. Nothing raises; every failure becomes an observation; nothing outside the
allow-list ever runs. The clinical calculators give a finite result for every plausible
patient and refuse, by validation, every argument outside the plausible range."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from compose.modules.medical.calculators import (
    ADULT_AGE_YEARS,
    ADULT_WEIGHT_KG,
    BMI_KG_M2,
    CREATININE_MG_DL,
    HEIGHT_M,
    WEIGHT_KG,
)
from compose.modules.medical.lab_units import CONVERSIONS, plausible_range
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


SEXES = st.sampled_from(["female", "male"])
ANALYTES = st.sampled_from(sorted(CONVERSIONS))
SYSTEMS = st.sampled_from(["si", "conventional"])
CALCULATORS = ["bmi", "egfr_ckd_epi_2021", "cha2ds2_vasc", "cockcroft_gault",
               "convert_lab_unit"]


def inside(bounds: tuple[float, float]) -> st.SearchStrategy[float]:
    return st.floats(*bounds)


def outside(bounds: tuple[float, float]) -> st.SearchStrategy[float]:
    low, high = bounds
    return (st.floats(max_value=low, exclude_max=True) | st.floats(min_value=high, exclude_min=True)
            | st.sampled_from([math.nan, math.inf, -math.inf]))


def outside_ages() -> st.SearchStrategy[float]:
    low, high = ADULT_AGE_YEARS
    return (st.integers(max_value=low - 1) | st.integers(min_value=high + 1)
            | st.sampled_from([math.nan, math.inf, 65.5]))


@st.composite
def plausible_calls(draw) -> ToolCall:
    name = draw(st.sampled_from(CALCULATORS))
    ages, sex = st.integers(*ADULT_AGE_YEARS), draw(SEXES)
    if name == "bmi":
        height = draw(inside(HEIGHT_M))
        weight = draw(inside(BMI_KG_M2)) * height**2
        assume(WEIGHT_KG[0] <= weight <= WEIGHT_KG[1])
        assume(BMI_KG_M2[0] <= weight / height**2 <= BMI_KG_M2[1])  # after rounding
        arguments = {"weight_kg": weight, "height_m": height}
    elif name == "egfr_ckd_epi_2021":
        arguments = {"creatinine_mg_dl": draw(inside(CREATININE_MG_DL)),
                     "age_years": draw(ages), "sex": sex}
    elif name == "cha2ds2_vasc":
        flags = ["congestive_heart_failure", "hypertension", "diabetes",
                 "stroke_tia_or_thromboembolism", "vascular_disease"]
        arguments = {"age_years": draw(ages), "sex": sex,
                     **{flag: draw(st.booleans()) for flag in flags}}
    elif name == "cockcroft_gault":
        arguments = {"age_years": draw(ages), "weight_kg": draw(inside(ADULT_WEIGHT_KG)),
                     "creatinine_mg_dl": draw(inside(CREATININE_MG_DL)), "sex": sex}
    else:
        analyte, to = draw(ANALYTES), draw(SYSTEMS)
        low, high, _ = plausible_range(analyte, to)
        arguments = {"analyte": analyte, "to": to, "value": draw(st.floats(low, high))}
    return ToolCall(name=name, arguments=arguments)


@st.composite
def implausible_calls(draw) -> tuple[ToolCall, str]:
    """A plausible call with one argument moved out of its range; returns the call and the
    argument to be blamed."""
    call = draw(plausible_calls())
    arguments = dict(call.arguments)
    spoilable = {"weight_kg": WEIGHT_KG if call.name == "bmi" else ADULT_WEIGHT_KG,
                 "height_m": HEIGHT_M, "creatinine_mg_dl": CREATININE_MG_DL}
    if call.name == "convert_lab_unit":
        field = "value"
        low, high, _ = plausible_range(arguments["analyte"], arguments["to"])
        arguments["value"] = draw(outside((low, high)))
    else:
        field = draw(st.sampled_from(
            sorted(k for k in arguments if k in spoilable or k == "age_years")))
        arguments[field] = draw(outside_ages() if field == "age_years"
                                else outside(spoilable[field]))
    return ToolCall(name=call.name, arguments=arguments), field


@FUZZ
@given(plausible_calls())
def test_every_plausible_patient_gets_a_finite_result(call):
    obs = execute_call(call, allowed=CALCULATORS)
    assert obs.ok, obs.error
    numbers = [v for v in json.loads(obs.result).values()
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert numbers and all(math.isfinite(v) for v in numbers), obs.result


@FUZZ
@given(implausible_calls())
def test_every_argument_out_of_range_is_refused_by_validation(case):
    call, field = case
    obs = execute_call(call, allowed=CALCULATORS)
    assert not obs.ok and not obs.valid, obs.result
    assert obs.error.startswith(f"invalid arguments for {call.name}: {field}"), obs.error

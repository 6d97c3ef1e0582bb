"""Clinical calculators against worked examples of their published formulas, and through the
tool executor: a table of implausible inputs (>= 82, every calculator) all refused by
validation, and the most extreme real patients on record all accepted. Not for clinical use.

Sources of the worked examples:
- BMI: CDC, "Adult BMI calculation" (metric example: 68 kg, 1.65 m -> 24.98); WHO categories.
- eGFR: Inker LA et al., N Engl J Med 2021;385:1737-49 (CKD-EPI 2021 creatinine); each
  expected value is the published equation worked by hand, the arithmetic written beside it.
- CHA2DS2-VASc: Lip GYH et al., Chest 2010;137:263-72, point table applied to example patients.
- Cockcroft-Gault: Cockcroft DW, Gault MH, Nephron 1976;16:31-41 (60-year-old 72 kg man,
  Scr 1.0 mg/dL -> (140-60) x 72 / (72 x 1.0) = 80 mL/min).
- Units: SI conversion factors of Young DS, Ann Intern Med 1987;106:114-29 (AMA Manual of
  Style table): glucose 90 mg/dL = 5.0 mmol/L, cholesterol 200 mg/dL = 5.18 mmol/L,
  creatinine 1.0 mg/dL = 88.4 umol/L.
- Extreme real patients: the records cited beside the bounds in
  compose.modules.medical.calculators and compose.modules.medical.lab_units (Wadlow 2.72 m,
  Minnoch 635 kg, Calment 122 y, creatinine 73.8 mg/dL = 6,524 umol/L, glucose 5,600 mg/dL
  and 147.6 mmol/L, haemoglobin 2 g/dL).
"""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from compose.modules.medical.calculators import (
    CreatinineClearanceResult,
    bmi,
    cha2ds2_vasc,
    cockcroft_gault,
    egfr_ckd_epi_2021,
    kdigo_stage,
)
from compose.modules.medical.lab_units import ConversionResult, convert_lab_unit
from compose.tools.execute import ToolCall, execute_call


def test_bmi_cdc_worked_example_and_who_categories():
    out = bmi(weight_kg=68, height_m=1.65)
    assert out.bmi == 24.98
    assert out.category == "normal weight"
    assert bmi(weight_kg=50, height_m=1.70).category == "underweight"  # 17.3
    assert bmi(weight_kg=80, height_m=1.70).category == "overweight"   # 27.7
    assert bmi(weight_kg=95, height_m=1.70).category == "obesity"      # 32.9
    assert "clinical" in out.note


@pytest.mark.parametrize(("scr", "age", "sex", "expected", "stage"), [
    # Scr equal to kappa: both spline terms are 1 -> 142 x 0.9938^60
    (0.9, 60, "male", 142 * 0.9938**60, "G1"),                                   # 97.8
    (0.7, 40, "female", 142 * 0.9938**40 * 1.012, "G1"),                         # 112.1
    # above kappa: the -1.200 slope
    (1.0, 50, "male", 142 * (1.0 / 0.9) ** -1.200 * 0.9938**50, "G1"),           # 91.7
    (2.0, 70, "female", 142 * (2.0 / 0.7) ** -1.200 * 0.9938**70 * 1.012, "G4"),  # 26.4
    # below kappa: the sex-specific alpha slope
    (0.5, 30, "female", 142 * (0.5 / 0.7) ** -0.241 * 0.9938**30 * 1.012, "G1"),  # 129.3
    (0.6, 45, "male", 142 * (0.6 / 0.9) ** -0.302 * 0.9938**45, "G1"),            # 121.8
])
def test_egfr_ckd_epi_2021_worked_examples(scr, age, sex, expected, stage):
    out = egfr_ckd_epi_2021(creatinine_mg_dl=scr, age_years=age, sex=sex)
    assert out.egfr == pytest.approx(round(expected, 1), abs=0.05)
    assert out.stage == stage


def test_egfr_hand_rounded_values_and_kdigo_boundaries():
    assert egfr_ckd_epi_2021(creatinine_mg_dl=1.0, age_years=50, sex="male").egfr == 91.7
    assert egfr_ckd_epi_2021(creatinine_mg_dl=2.0, age_years=70, sex="female").egfr == 26.4
    assert [kdigo_stage(v) for v in (90, 89.9, 60, 45, 44.9, 30, 15, 14.9)] == [
        "G1", "G2", "G2", "G3a", "G3b", "G3b", "G4", "G5"]


@pytest.mark.parametrize(("patient", "score"), [
    ({"age_years": 55, "sex": "male"}, 0),
    ({"age_years": 55, "sex": "female"}, 1),                        # Sc
    ({"age_years": 72, "sex": "male", "hypertension": True}, 2),     # A + H
    ({"age_years": 78, "sex": "female", "hypertension": True, "diabetes": True}, 5),  # A2 Sc H D
    ({"age_years": 68, "sex": "male", "stroke_tia_or_thromboembolism": True,
      "congestive_heart_failure": True}, 4),                         # A + S2 + C
    ({"age_years": 80, "sex": "female", "congestive_heart_failure": True, "hypertension": True,
      "diabetes": True, "stroke_tia_or_thromboembolism": True, "vascular_disease": True}, 9),
])
def test_cha2ds2_vasc_point_table(patient, score):
    out = cha2ds2_vasc(**patient)
    assert out.score == score
    assert sum(out.points.values()) == score


def test_cha2ds2_vasc_age_bands_are_exclusive():
    assert cha2ds2_vasc(age_years=64, sex="male").points["age"] == 0
    assert cha2ds2_vasc(age_years=65, sex="male").points["age"] == 1
    assert cha2ds2_vasc(age_years=74, sex="male").points["age"] == 1
    assert cha2ds2_vasc(age_years=75, sex="male").points["age"] == 2


def test_cockcroft_gault_worked_examples():
    assert cockcroft_gault(age_years=60, weight_kg=72, creatinine_mg_dl=1.0,
                           sex="male").crcl_ml_min == 80.0
    # same patient, female: x 0.85
    assert cockcroft_gault(age_years=60, weight_kg=72, creatinine_mg_dl=1.0,
                           sex="female").crcl_ml_min == 68.0
    # (140-80) x 50 / (72 x 1.5) = 27.8
    assert cockcroft_gault(age_years=80, weight_kg=50, creatinine_mg_dl=1.5,
                           sex="male").crcl_ml_min == 27.8


def test_lab_unit_conversion_worked_examples_and_round_trip():
    assert convert_lab_unit(analyte="glucose", value=90, to="si").value == pytest.approx(5.0,
                                                                                         abs=0.01)
    chol = convert_lab_unit(analyte="total_cholesterol", value=200, to="si")
    assert (chol.value, chol.unit) == (pytest.approx(5.18, abs=0.01), "mmol/L")
    crea = convert_lab_unit(analyte="creatinine", value=1.0, to="si")
    assert (crea.value, crea.unit, crea.from_unit) == (88.4, "umol/L", "mg/dL")
    back = convert_lab_unit(analyte="creatinine", value=88.4, to="conventional")
    assert (back.value, back.unit) == (1.0, "mg/dL")
    assert convert_lab_unit(analyte="hemoglobin", value=13.5, to="si").value == 135.0


@pytest.mark.parametrize(("name", "arguments"), [
    ("bmi", {"weight_kg": -3, "height_m": 1.7}),
    ("bmi", {"weight_kg": 70, "height_m": 17}),                  # cm given as m
    ("egfr_ckd_epi_2021", {"creatinine_mg_dl": 1.0, "age_years": 12, "sex": "male"}),
    ("egfr_ckd_epi_2021", {"creatinine_mg_dl": 1.0, "age_years": 40, "sex": "other"}),
    ("cha2ds2_vasc", {"age_years": 70}),                         # sex missing
    ("cockcroft_gault", {"age_years": 60, "weight_kg": 72, "creatinine_mg_dl": 0,
                         "sex": "male"}),
    ("convert_lab_unit", {"analyte": "sodium", "value": 140, "to": "si"}),
])
def test_impossible_inputs_are_rejected_before_computing(name, arguments):
    obs = execute_call(ToolCall(name=name, arguments=arguments), allowed=[name])
    assert not obs.valid and not obs.ok
    assert obs.error.startswith(f"invalid arguments for {name}")


def test_calculator_through_executor_returns_json_with_disclaimer():
    obs = execute_call(ToolCall(name="egfr_ckd_epi_2021", arguments={
        "creatinine_mg_dl": 1.0, "age_years": 50, "sex": "male"}), allowed=["egfr_ckd_epi_2021"])
    assert obs.ok and obs.valid
    assert '"egfr": 91.7' in obs.result and "not for clinical use" in obs.result


NAN, INF = math.nan, math.inf
PATIENTS = {
    "bmi": {"weight_kg": 70, "height_m": 1.75},
    "egfr_ckd_epi_2021": {"creatinine_mg_dl": 1.0, "age_years": 50, "sex": "male"},
    "cha2ds2_vasc": {"age_years": 70, "sex": "female"},
    "cockcroft_gault": {"age_years": 60, "weight_kg": 72, "creatinine_mg_dl": 1.0,
                        "sex": "male"},
}
# Values no living patient has: signs, zeros, non-numbers, unit slips (g, cm, umol/L taken
# for kg, m, mg/dL), subnormal floats that overflow a division, children in adult formulas.
AGES = [-5, 0, 5, 130, 1000, NAN, INF]
WEIGHTS = [-70, 0, 0.01, 1e-310, 900, 70_000, NAN, INF, -INF]
ADULT_WEIGHTS = [1.0]  # an adult, though not a newborn, weighs more than 1 kg
HEIGHTS = [-1.75, 0, 0.05, 3.5, 175, NAN, INF]
CREATININES = [-1, 0, 0.001, 1e-310, 150, 1000, NAN, INF]
# analyte: an absurd value in conventional units, then one in SI units
LAB_ABSURD = {"glucose": (50_000, 5_000), "total_cholesterol": (90_000, 2_000),
              "triglycerides": (2e6, 50_000), "creatinine": (500, 100_000),
              "urea_nitrogen": (20_000, 10_000), "calcium": (400, 100),
              "hemoglobin": (300, 3_000)}


def _field_cases(name: str, field: str, values: list) -> list:
    return [pytest.param(name, {**PATIENTS[name], field: v}, field,
                         id=f"{name}-{field}={v!r}") for v in values]


def _lab_cases() -> list:
    cases = []
    for analyte, (conventional, si) in LAB_ABSURD.items():
        for value, to in [(-1, "si"), (0, "si"), (NAN, "si"), (INF, "conventional"),
                          (conventional, "si"), (si, "conventional")]:
            cases.append(pytest.param("convert_lab_unit",
                                      {"analyte": analyte, "value": value, "to": to}, "value",
                                      id=f"{analyte}={value!r}->{to}"))
    return cases


IMPLAUSIBLE = [
    *_field_cases("bmi", "weight_kg", WEIGHTS),
    *_field_cases("bmi", "height_m", HEIGHTS),
    # each value real, the pair not: BMI 2800, 0.08 and 300 kg/m2
    *[pytest.param("bmi", {"weight_kg": w, "height_m": h}, "height_m", id=f"bmi-{w}kg-{h}m")
      for w, h in [(700, 0.5), (0.5, 2.5), (300, 1.0)]],
    *_field_cases("egfr_ckd_epi_2021", "creatinine_mg_dl", CREATININES),
    *_field_cases("egfr_ckd_epi_2021", "age_years", AGES),
    *_field_cases("cha2ds2_vasc", "age_years", AGES),
    *_field_cases("cockcroft_gault", "age_years", AGES),
    *_field_cases("cockcroft_gault", "weight_kg", WEIGHTS + ADULT_WEIGHTS),
    *_field_cases("cockcroft_gault", "creatinine_mg_dl", CREATININES),
    *_lab_cases(),
]


def test_the_implausible_table_covers_every_calculator_with_at_least_82_cases():
    assert len(IMPLAUSIBLE) >= 82
    assert {case.values[0] for case in IMPLAUSIBLE} == {*PATIENTS, "convert_lab_unit"}


@pytest.mark.parametrize(("name", "arguments", "field"), IMPLAUSIBLE)
def test_implausible_input_is_refused_by_validation_naming_the_field(name, arguments, field):
    obs = execute_call(ToolCall(name=name, arguments=arguments), allowed=[name])
    assert not obs.ok, f"accepted: {obs.result}"
    assert not obs.valid, obs.error  # refused before computing, not failed while computing
    assert obs.error.startswith(f"invalid arguments for {name}: {field}"), obs.error


@pytest.mark.parametrize(("name", "arguments"), [
    pytest.param("bmi", {"weight_kg": 0.212, "height_m": 0.24}, id="smallest-newborn"),
    pytest.param("bmi", {"weight_kg": 635, "height_m": 1.85}, id="heaviest-man"),
    pytest.param("bmi", {"weight_kg": 199, "height_m": 2.72}, id="tallest-man"),
    pytest.param("bmi", {"weight_kg": 14.5, "height_m": 0.546}, id="shortest-man"),
    pytest.param("egfr_ckd_epi_2021", {"creatinine_mg_dl": 73.8, "age_years": 23,
                                       "sex": "male"}, id="highest-creatinine"),
    pytest.param("egfr_ckd_epi_2021", {"creatinine_mg_dl": 0.1, "age_years": 122,
                                       "sex": "female"}, id="oldest-woman"),
    pytest.param("cha2ds2_vasc", {"age_years": 122, "sex": "female"}, id="oldest-af"),
    pytest.param("cockcroft_gault", {"age_years": 40, "weight_kg": 635,
                                     "creatinine_mg_dl": 0.8, "sex": "male"}, id="heaviest"),
    pytest.param("cockcroft_gault", {"age_years": 20, "weight_kg": 5.9,
                                     "creatinine_mg_dl": 0.1, "sex": "female"}, id="lightest"),
    pytest.param("convert_lab_unit", {"analyte": "glucose", "value": 5600, "to": "si"},
                 id="highest-glucose"),
    pytest.param("convert_lab_unit", {"analyte": "glucose", "value": 147.6,
                                      "to": "conventional"}, id="glucose-record-in-si"),
    pytest.param("convert_lab_unit", {"analyte": "triglycerides", "value": 16_900,
                                      "to": "si"}, id="severe-hypertriglyceridaemia"),
    pytest.param("convert_lab_unit", {"analyte": "creatinine", "value": 6524,
                                      "to": "conventional"}, id="creatinine-record-umol"),
    pytest.param("convert_lab_unit", {"analyte": "hemoglobin", "value": 2.0, "to": "si"},
                 id="lowest-hemoglobin-survived"),
])
def test_extreme_but_real_values_are_accepted(name, arguments):
    obs = execute_call(ToolCall(name=name, arguments=arguments), allowed=[name])
    assert obs.ok, obs.error


def test_direct_python_calls_are_held_to_the_same_bounds():
    with pytest.raises(ValidationError, match="weight_kg"):
        bmi(weight_kg=-3, height_m=1.7)
    with pytest.raises(ValidationError, match="BMI of 2800"):
        bmi(weight_kg=700, height_m=0.5)
    with pytest.raises(ValidationError, match="creatinine_mg_dl"):
        cockcroft_gault(age_years=60, weight_kg=72, creatinine_mg_dl=1e-310, sex="male")
    with pytest.raises(ValidationError, match="plausible range"):
        convert_lab_unit(analyte="glucose", value=50_000, to="si")


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_results_refuse_a_non_finite_number(number):
    with pytest.raises(ValidationError, match="finite"):
        CreatinineClearanceResult(crcl_ml_min=number)
    with pytest.raises(ValidationError, match="finite"):
        ConversionResult(value=number, unit="mmol/L", from_value=1.0, from_unit="mg/dL")

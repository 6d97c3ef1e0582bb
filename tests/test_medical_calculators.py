"""Clinical calculators against worked examples of their published formulas, and through the
tool executor (argument bounds reject impossible inputs). Not for clinical use.

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
"""

from __future__ import annotations

import pytest

from compose.tools.calculators import (
    bmi,
    cha2ds2_vasc,
    cockcroft_gault,
    egfr_ckd_epi_2021,
    kdigo_stage,
)
from compose.tools.execute import ToolCall, execute_call
from compose.tools.lab_units import convert_lab_unit


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

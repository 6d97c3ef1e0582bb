"""Clinical calculators as agent tools. NOT FOR CLINICAL USE (see compose.tools.medical).

Each calculator implements one published formula, cited in its docstring, and is tested in
``tests/test_medical_calculators.py`` against worked examples. Argument bounds reject
physiologically impossible inputs before anything is computed, so a model that invents a
weight of -3 kg gets a validation error as its observation, not a number.

Usage::

    from compose.tools.calculators import bmi
    bmi(weight_kg=68, height_m=1.65).bmi  # 24.98
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from compose.tools.registry import tool

Sex = Literal["female", "male"]
DISCLAIMER = "not for clinical use"


class BmiResult(BaseModel):
    bmi: float = Field(description="kg/m2, rounded to 2 decimals")
    category: str
    note: str = DISCLAIMER


class EgfrResult(BaseModel):
    egfr: float = Field(description="mL/min/1.73 m2, rounded to 1 decimal")
    stage: str = Field(description="KDIGO GFR category")
    note: str = DISCLAIMER


class ChadsVascResult(BaseModel):
    score: int = Field(ge=0, le=9)
    points: dict[str, int]
    note: str = DISCLAIMER


class CreatinineClearanceResult(BaseModel):
    crcl_ml_min: float = Field(description="mL/min, rounded to 1 decimal")
    note: str = DISCLAIMER


def bmi_category(value: float) -> str:
    """WHO adult categories."""
    if value < 18.5:
        return "underweight"
    if value < 25:
        return "normal weight"
    if value < 30:
        return "overweight"
    return "obesity"


@tool(result=BmiResult, timeout_s=1.0)
def bmi(weight_kg: Annotated[float, Field(gt=0, le=700)],
        height_m: Annotated[float, Field(gt=0.3, le=3.0)]) -> BmiResult:
    """Body mass index from weight (kg) and height (m), with the WHO adult category.

    Formula (Quetelet; WHO, CDC): BMI = weight [kg] / height [m]^2.
    """
    value = weight_kg / height_m**2
    return BmiResult(bmi=round(value, 2), category=bmi_category(value))


def kdigo_stage(egfr: float) -> str:
    """KDIGO 2012 GFR categories G1-G5."""
    for threshold, stage in ((90, "G1"), (60, "G2"), (45, "G3a"), (30, "G3b"), (15, "G4")):
        if egfr >= threshold:
            return stage
    return "G5"


@tool(result=EgfrResult, timeout_s=1.0)
def egfr_ckd_epi_2021(creatinine_mg_dl: Annotated[float, Field(gt=0, le=40)],
                      age_years: Annotated[int, Field(ge=18, le=120)],
                      sex: Sex) -> EgfrResult:
    """Estimated GFR by the race-free CKD-EPI 2021 creatinine equation (adults).

    Inker LA et al., N Engl J Med 2021;385:1737-49:
    eGFR = 142 x min(Scr/k, 1)^a x max(Scr/k, 1)^-1.200 x 0.9938^age x 1.012 [if female],
    k = 0.7 (female) or 0.9 (male), a = -0.241 (female) or -0.302 (male), Scr in mg/dL.
    """
    female = sex == "female"
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_dl / kappa
    value = (142 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200
             * 0.9938**age_years * (1.012 if female else 1.0))
    return EgfrResult(egfr=round(value, 1), stage=kdigo_stage(value))


@tool(result=ChadsVascResult, timeout_s=1.0)
def cha2ds2_vasc(age_years: Annotated[int, Field(ge=0, le=120)], sex: Sex,
                 congestive_heart_failure: bool = False, hypertension: bool = False,
                 diabetes: bool = False, stroke_tia_or_thromboembolism: bool = False,
                 vascular_disease: bool = False) -> ChadsVascResult:
    """CHA2DS2-VASc stroke-risk score in atrial fibrillation (0-9).

    Lip GYH et al., Chest 2010;137:263-72: Congestive heart failure 1, Hypertension 1,
    Age >= 75 2, Diabetes 1, prior Stroke/TIA/thromboembolism 2, Vascular disease (prior
    myocardial infarction, peripheral artery disease, aortic plaque) 1, Age 65-74 1,
    Sex category female 1.
    """
    points = {
        "congestive_heart_failure": int(congestive_heart_failure),
        "hypertension": int(hypertension),
        "age": 2 if age_years >= 75 else 1 if age_years >= 65 else 0,
        "diabetes": int(diabetes),
        "stroke_tia_or_thromboembolism": 2 * int(stroke_tia_or_thromboembolism),
        "vascular_disease": int(vascular_disease),
        "sex_female": int(sex == "female"),
    }
    return ChadsVascResult(score=sum(points.values()), points=points)


@tool(result=CreatinineClearanceResult, timeout_s=1.0)
def cockcroft_gault(age_years: Annotated[int, Field(ge=18, le=120)],
                    weight_kg: Annotated[float, Field(gt=0, le=700)],
                    creatinine_mg_dl: Annotated[float, Field(gt=0, le=40)],
                    sex: Sex) -> CreatinineClearanceResult:
    """Creatinine clearance (mL/min) by the Cockcroft-Gault equation, used for drug dosing.

    Cockcroft DW, Gault MH, Nephron 1976;16:31-41:
    CrCl = (140 - age) x weight [kg] / (72 x Scr [mg/dL]), x 0.85 if female.
    """
    value = (140 - age_years) * weight_kg / (72 * creatinine_mg_dl)
    if sex == "female":
        value *= 0.85
    return CreatinineClearanceResult(crcl_ml_min=round(value, 1))

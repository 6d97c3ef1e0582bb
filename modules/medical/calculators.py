"""Clinical calculators as agent tools. NOT FOR CLINICAL USE (see compose.modules.medical).

Each calculator implements one published formula, cited in its docstring, and is tested in
``tests/test_medical_calculators.py`` against worked examples. Argument bounds reject
physiologically impossible inputs before anything is computed, so a model that invents a
weight of -3 kg, or reads 175 cm as 175 m, gets a validation error naming the argument as
its observation, not a number. The bounds are plausibility limits, not reference ranges:
each is wider than the most extreme patient on record (cited beside it), so a real extreme
passes, and refuses only what no living person has. The same argument model checks direct
Python calls (:func:`checked`), and the result models refuse a non-finite number.

Usage::

    from compose.modules.medical.calculators import bmi
    bmi(weight_kg=68, height_m=1.65).bmi  # 24.98
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import AfterValidator, BaseModel, Field, ValidationInfo

from compose.tools.registry import args_model, tool

Sex = Literal["female", "male"]
DISCLAIMER = "not for clinical use"
F = TypeVar("F", bound=Callable[..., Any])

# The three age-based scores are defined for adults: CKD-EPI 2021 and Cockcroft-Gault were
# derived in adults, CHA2DS2-VASc in adults with atrial fibrillation. Oldest verified person:
# Jeanne Calment, 122 years (Guinness World Records).
ADULT_AGE_YEARS = (18, 125)
# The smallest surviving newborns on record weigh ~0.21-0.25 kg at ~24 cm; heaviest person
# ~635 kg (Jon Brower Minnoch, Guinness World Records).
WEIGHT_KG = (0.2, 700.0)
# Lightest person on record past infancy: ~2.1 kg at 17 (Lucia Zarate, Guinness).
ADULT_WEIGHT_KG = (2.0, 700.0)
# Newborns from ~0.24 m; tallest person 2.72 m (Robert Wadlow, Guinness).
HEIGHT_M = (0.2, 2.8)
# 0.21 kg at 0.24 m is 3.7 kg/m2; the heaviest people on record are at ~185-205 kg/m2.
BMI_KG_M2 = (3.0, 250.0)
# Below what clinical assays quantify (~0.1 mg/dL); highest reported 73.8 mg/dL (Case Rep
# Nephrol 2021;2021:6048919, doi:10.1155/2021/6048919).
CREATININE_MG_DL = (0.05, 100.0)


def plausible(bounds: tuple[float, float], unit: str) -> Any:
    """A finite number within ``bounds`` (inclusive), as a pydantic field."""
    low, high = bounds
    return Field(ge=low, le=high, allow_inf_nan=False,
                 description=f"{unit}, plausible range {low:g}-{high:g}")


def _plausible_bmi(height_m: float, info: ValidationInfo) -> float:
    """Weight and height can each be real while the pair is not (700 kg at 0.5 m): usually
    one of them in the wrong unit."""
    weight_kg = info.data.get("weight_kg")  # absent when the weight itself was refused
    if weight_kg is not None:
        value = weight_kg / height_m**2
        low, high = BMI_KG_M2
        if not low <= value <= high:
            raise ValueError(
                f"weight_kg={weight_kg:g} at height_m={height_m:g} is a BMI of {value:.4g} "
                f"kg/m2, outside anything recorded ({low:g}-{high:g}); check the units (kg, m)")
    return height_m


AdultAge = Annotated[int, plausible(ADULT_AGE_YEARS, "years (adults)")]
Creatinine = Annotated[float, plausible(CREATININE_MG_DL, "serum creatinine, mg/dL")]


def checked(fn: F) -> F:
    """Validate direct Python calls with the argument model the tool executor uses, so a
    bound holds however a calculator is called. Keyword arguments only."""
    model, _ = args_model(fn, fn.__name__)

    @functools.wraps(fn)
    def call(**arguments: Any) -> Any:
        return fn(**dict(model.model_validate(arguments)))

    return cast(F, call)


class BmiResult(BaseModel):
    bmi: float = Field(allow_inf_nan=False, description="kg/m2, rounded to 2 decimals")
    category: str
    note: str = DISCLAIMER


class EgfrResult(BaseModel):
    egfr: float = Field(allow_inf_nan=False, description="mL/min/1.73 m2, rounded to 1 decimal")
    stage: str = Field(description="KDIGO GFR category")
    note: str = DISCLAIMER


class ChadsVascResult(BaseModel):
    score: int = Field(ge=0, le=9)
    points: dict[str, int]
    note: str = DISCLAIMER


class CreatinineClearanceResult(BaseModel):
    crcl_ml_min: float = Field(allow_inf_nan=False, description="mL/min, rounded to 1 decimal")
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
@checked
def bmi(*, weight_kg: Annotated[float, plausible(WEIGHT_KG, "kg")],
        height_m: Annotated[float, plausible(HEIGHT_M, "m"), AfterValidator(_plausible_bmi)],
        ) -> BmiResult:
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
@checked
def egfr_ckd_epi_2021(*, creatinine_mg_dl: Creatinine, age_years: AdultAge,
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
@checked
def cha2ds2_vasc(*, age_years: AdultAge, sex: Sex,
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
@checked
def cockcroft_gault(*, age_years: AdultAge,
                    weight_kg: Annotated[float, plausible(ADULT_WEIGHT_KG, "kg (adults)")],
                    creatinine_mg_dl: Creatinine, sex: Sex) -> CreatinineClearanceResult:
    """Creatinine clearance (mL/min) by the Cockcroft-Gault equation, used for drug dosing.

    Cockcroft DW, Gault MH, Nephron 1976;16:31-41:
    CrCl = (140 - age) x weight [kg] / (72 x Scr [mg/dL]), x 0.85 if female.
    """
    value = (140 - age_years) * weight_kg / (72 * creatinine_mg_dl)
    if sex == "female":
        value *= 0.85
    return CreatinineClearanceResult(crcl_ml_min=round(value, 1))

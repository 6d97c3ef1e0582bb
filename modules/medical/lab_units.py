"""Lab value unit conversion between conventional (US) and SI units. NOT FOR CLINICAL USE.

Abstracts report lab values in either system; an agent comparing a threshold in mg/dL with
one in mmol/L needs the conversion, and small models get the arithmetic wrong. The factors
are the standard SI conversion factors (Young DS, Ann Intern Med 1987;106:114-29, as
tabulated in the AMA Manual of Style), derived from molar masses: SI value = conventional
value x factor.

Usage::

    from compose.modules.medical.lab_units import convert_lab_unit
    convert_lab_unit(analyte="glucose", value=90, to="si").value  # 5.0 (mmol/L)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationInfo

from compose.modules.medical.calculators import CREATININE_MG_DL, checked
from compose.tools.registry import tool

# analyte: (conventional unit, SI unit, factor such that SI = conventional x factor)
CONVERSIONS: dict[str, tuple[str, str, float]] = {
    "glucose": ("mg/dL", "mmol/L", 0.0555),
    "total_cholesterol": ("mg/dL", "mmol/L", 0.0259),
    "triglycerides": ("mg/dL", "mmol/L", 0.0113),
    "creatinine": ("mg/dL", "umol/L", 88.4),
    "urea_nitrogen": ("mg/dL", "mmol/L", 0.357),
    "calcium": ("mg/dL", "mmol/L", 0.25),
    "hemoglobin": ("g/dL", "g/L", 10.0),
}

# Plausibility limits in conventional units (SI limits follow by the factor): wider than the
# most extreme value reported in a living patient, so they refuse only a slip (a sign, a
# unit, a digit) or an invention.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    # no living patient is below ~1; highest reported 5,600 mg/dL (Soni A et al., Diabetes
    # Care 1990;13:181-2) and 2,656 mg/dL (Guinness World Records, 2008)
    "glucose": (1.0, 10_000.0),
    # abetalipoproteinaemia can sit near 20-50; homozygous familial hypercholesterolaemia
    # and lipoprotein-X cholestasis reach four digits
    "total_cholesterol": (5.0, 5_000.0),
    # severe hypertriglyceridaemia reported at 16,900 mg/dL (BMC Endocr Disord 2019,
    # doi:10.1186/s12902-019-0425-9); lipaemic samples are diluted before measuring
    "triglycerides": (1.0, 100_000.0),
    "creatinine": CREATININE_MG_DL,  # see compose.modules.medical.calculators
    # several times the few hundred mg/dL of the most uraemic patients
    "urea_nitrogen": (0.5, 1_000.0),
    # hypercalcaemic crisis begins at 14 mg/dL (StatPearls, "Resistant Hypercalcemia"); the
    # bound is ~3x that, and ~1/4 of the deepest hypocalcaemia
    "calcium": (1.0, 40.0),
    # survival reported from 2 g/dL (Blood 2013;122(21):4657); polycythaemia reaches ~25
    "hemoglobin": (0.5, 30.0),
}

Analyte = Literal["glucose", "total_cholesterol", "triglycerides", "creatinine",
                  "urea_nitrogen", "calcium", "hemoglobin"]
System = Literal["si", "conventional"]


def plausible_range(analyte: str, to: str) -> tuple[float, float, str]:
    """The plausible range of a value to convert ``to`` a system, in the units it is given
    in (the other system's), and that unit."""
    conventional, si, factor = CONVERSIONS[analyte]
    low, high = PLAUSIBLE[analyte]
    return (low, high, conventional) if to == "si" else (low * factor, high * factor, si)


def _plausible_value(value: float, info: ValidationInfo) -> float:
    analyte, to = info.data.get("analyte"), info.data.get("to")
    if analyte is None or to is None:  # refused themselves; nothing to check against
        return value
    low, high, unit = plausible_range(analyte, to)
    if not low <= value <= high:
        raise ValueError(f"{analyte} {value:g} {unit} is outside the plausible range "
                         f"{low:.4g}-{high:.4g} {unit}; check the analyte and the unit")
    return value


class ConversionResult(BaseModel):
    value: float = Field(allow_inf_nan=False)
    unit: str
    from_value: float
    from_unit: str
    note: str = "not for clinical use"


@tool(result=ConversionResult, timeout_s=1.0)
@checked
def convert_lab_unit(*, analyte: Analyte, to: System,
                     value: Annotated[float, Field(gt=0, allow_inf_nan=False),
                                      AfterValidator(_plausible_value)]) -> ConversionResult:
    """Convert a lab value between conventional units (mg/dL, g/dL) and SI units (mmol/L,
    umol/L, g/L); ``to`` names the target system."""
    conventional, si, factor = CONVERSIONS[analyte]
    if to == "si":
        return ConversionResult(value=round(value * factor, 3), unit=si, from_value=value,
                                from_unit=conventional)
    return ConversionResult(value=round(value / factor, 3), unit=conventional, from_value=value,
                            from_unit=si)

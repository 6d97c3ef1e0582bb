"""Lab value unit conversion between conventional (US) and SI units. NOT FOR CLINICAL USE.

Abstracts report lab values in either system; an agent comparing a threshold in mg/dL with
one in mmol/L needs the conversion, and small models get the arithmetic wrong. The factors
are the standard SI conversion factors (Young DS, Ann Intern Med 1987;106:114-29, as
tabulated in the AMA Manual of Style), derived from molar masses: SI value = conventional
value x factor.

Usage::

    from compose.tools.lab_units import convert_lab_unit
    convert_lab_unit(analyte="glucose", value=90, to="si").value  # 5.0 (mmol/L)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

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

Analyte = Literal["glucose", "total_cholesterol", "triglycerides", "creatinine",
                  "urea_nitrogen", "calcium", "hemoglobin"]


class ConversionResult(BaseModel):
    value: float
    unit: str
    from_value: float
    from_unit: str
    note: str = "not for clinical use"


@tool(result=ConversionResult, timeout_s=1.0)
def convert_lab_unit(analyte: Analyte,
                     value: Annotated[float, Field(ge=0, le=100_000)],
                     to: Literal["si", "conventional"]) -> ConversionResult:
    """Convert a lab value between conventional units (mg/dL, g/dL) and SI units (mmol/L,
    umol/L, g/L); ``to`` names the target system."""
    conventional, si, factor = CONVERSIONS[analyte]
    if to == "si":
        return ConversionResult(value=round(value * factor, 3), unit=si, from_value=value,
                                from_unit=conventional)
    return ConversionResult(value=round(value / factor, 3), unit=conventional, from_value=value,
                            from_unit=si)

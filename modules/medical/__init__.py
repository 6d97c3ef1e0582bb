"""Built-in medical tools: evidence search over biomedical abstracts, clinical calculators and
lab unit conversion.

NOT FOR CLINICAL USE. These tools exist to exercise and evaluate tool-augmented agents on
research benchmarks (PubMedQA). They implement published formulas and are unit-tested against
worked examples, but they are not validated medical devices and must not inform the care of
any patient.

Importing this module registers the tools (``compose.modules.medical.calculators``,
``compose.modules.medical.lab_units``, ``compose.modules.medical.evidence``).
"""

from compose.modules.medical import calculators, evidence, lab_units

__all__ = ["calculators", "evidence", "lab_units"]

"""Built-in medical tools: evidence search over biomedical abstracts, clinical calculators and
lab unit conversion.

NOT FOR CLINICAL USE. These tools exist to exercise and evaluate tool-augmented agents on
research benchmarks (PubMedQA). They implement published formulas and are unit-tested against
worked examples, but they are not validated medical devices and must not inform the care of
any patient.

Each file registers its tools when imported; the tool registry imports a file the first time
one of its tools is named (``BUILTIN_TOOLS`` in :mod:`compose.tools.registry`), so a graph
that uses only ``bmi`` does not load the evidence search.
"""

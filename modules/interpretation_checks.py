"""Checks on interpretations: filter by verdict, or ask the verify module about each one.

``keep_verified`` is the baseline's last step (drop what its verifier rejected).
``verify_interpretations`` runs the ``verify`` module on each (question, answer, passage)
triple, one serialized call each; as the last node of a graph with ``mode: llm`` it is the
"verify module's judgement" on the output, scored by the ``grounded_precision_verify`` metric.
With ``mode: disabled`` it changes nothing and calls nothing, so a graph can carry it as an
opt-in judge (``--set nodes.judge.params.mode=llm``) without paying for it by default.

Usage::

    from compose.modules.interpretation_checks import VerifyInterpretations
    VerifyInterpretations(mode="llm")({"interpretations": [...]}, ctx).interpretations
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from compose.module import Module, NoParams
from compose.modules.interpretation import Interpretation
from compose.modules.verify import Verify
from compose.registry import register
from compose.runtime import ModuleContext


class KeepVerifiedInput(BaseModel):
    candidates: list[Interpretation] = Field(default_factory=list)


class KeepVerifiedOutput(BaseModel):
    interpretations: list[Interpretation]
    rejected: int = Field(description="Candidates the verifier did not accept.")


@register
class KeepVerified(Module[KeepVerifiedInput, KeepVerifiedOutput, NoParams]):
    name = "keep_verified"
    purpose = "Keep the candidate interpretations whose verdict is grounded."
    cacheable = False

    def run(self, inp: KeepVerifiedInput, ctx: ModuleContext) -> KeepVerifiedOutput:
        kept = [item for item in inp.candidates if item.verified]
        return KeepVerifiedOutput(interpretations=kept, rejected=len(inp.candidates) - len(kept))


class VerifyInterpretationsInput(BaseModel):
    interpretations: list[Interpretation] = Field(default_factory=list)


class VerifyInterpretationsOutput(BaseModel):
    interpretations: list[Interpretation]


class VerifyInterpretationsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["llm", "containment", "disabled"] = "llm"
    max_passage_chars: int = Field(default=500, ge=50)


@register
class VerifyInterpretations(Module[VerifyInterpretationsInput, VerifyInterpretationsOutput,
                                   VerifyInterpretationsParams]):
    name = "verify_interpretations"
    purpose = ("Set each interpretation's verdict with the verify module, against its own "
               "passage (disabled: leave them unchanged).")
    cacheable = False  # each verify call is cached on its own

    def run(self, inp: VerifyInterpretationsInput,
            ctx: ModuleContext) -> VerifyInterpretationsOutput:
        if self.params.mode == "disabled":
            return VerifyInterpretationsOutput(interpretations=inp.interpretations)
        verify = Verify(mode=self.params.mode, max_passage_chars=self.params.max_passage_chars)
        judged = []
        for item in inp.interpretations:
            verdict = verify({"question": item.question, "answer": item.answer,
                              "passages": [item.passage]}, ctx)
            judged.append(item.model_copy(update={"verified": verdict.grounded}))
        return VerifyInterpretationsOutput(interpretations=judged)

"""Interpretations of an ambiguous question, and the final answer that lists them.

An :class:`Interpretation` is the unit VERDICT and the diversify-then-verify baseline both
produce: a disambiguated question, its answer and the one passage it rests on. The passage
travels with it (not only its id) so grounding can be scored from the graph's outputs alone,
after the trace is gone. ``list_interpretations`` turns the surviving ones into the graph's
final answer: one line per interpretation with its answer and citation (no LLM).

Usage::

    from compose.modules.interpretation import ListInterpretations
    out = ListInterpretations()({"interpretations": [...]})
    out.answer, out.citations, out.abstained
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from compose.corpus import Passage
from compose.module import Module
from compose.registry import register
from compose.runtime import ModuleContext
from compose.text import UNKNOWN


class Interpretation(BaseModel):
    """One reading of an ambiguous question, answered from one passage."""

    question: str = Field(description="The disambiguated question.")
    answer: str
    passage: Passage = Field(description="The passage the answer rests on.")
    verified: bool | None = Field(
        default=None, description="The verify module's verdict; None when not checked.")
    support: int = Field(default=1, ge=1,
                         description="How many interpretations consolidation merged into it.")


class ListInterpretationsInput(BaseModel):
    interpretations: list[Interpretation] = Field(default_factory=list)


class ListInterpretationsOutput(BaseModel):
    answer: str
    citations: list[str] = Field(default_factory=list)
    abstained: bool = False


class ListInterpretationsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_questions: bool = Field(
        default=True, description="Show each disambiguated question before its answer.")


def render_line(number: int, item: Interpretation, include_question: bool) -> str:
    claim = f"{item.question} {item.answer}" if include_question else item.answer
    return f"{number}. {claim} [{item.passage.id}]"


@register
class ListInterpretations(Module[ListInterpretationsInput, ListInterpretationsOutput,
                                 ListInterpretationsParams]):
    name = "list_interpretations"
    purpose = "Final answer: one line per interpretation with its answer and cited passage."

    def run(self, inp: ListInterpretationsInput, ctx: ModuleContext) -> ListInterpretationsOutput:
        if not inp.interpretations:
            return ListInterpretationsOutput(answer=UNKNOWN, abstained=True)
        lines = [render_line(n, item, self.params.include_questions)
                 for n, item in enumerate(inp.interpretations, start=1)]
        citations = list(dict.fromkeys(item.passage.id for item in inp.interpretations))
        return ListInterpretationsOutput(answer="\n".join(lines), citations=citations)

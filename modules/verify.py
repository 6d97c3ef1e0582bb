"""Answer verification: is the answer supported by the passages?

``mode: llm`` asks the generator for a verdict and a reason; ``containment`` checks that the
normalised answer occurs in a passage (no LLM); ``disabled`` accepts every answer - the "no
verification loop" ablation. Otherwise an "unknown" answer is never grounded (no LLM call).

Usage::

    Verify()({"question": "...", "answer": "Caskel", "passages": [...]})
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from compose.corpus import Passage
from compose.module import LLMModule, PromptTemplate
from compose.modules.answer import format_passages
from compose.registry import register
from compose.runtime import ModuleContext
from compose.text import answer_in, is_abstention


class VerifyInput(BaseModel):
    question: str = Field(min_length=1)
    answer: str
    passages: list[Passage] = Field(default_factory=list)


class VerifyOutput(BaseModel):
    grounded: bool
    reason: str = ""


class VerifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["llm", "containment", "disabled"] = "llm"
    max_passage_chars: int = Field(default=500, ge=50)
    max_passages: int = Field(default=5, ge=1)


class EmittedVerdict(BaseModel):
    reason: str = Field(max_length=120)
    grounded: bool


def answer_in_passages(answer: str, passages: list[Passage]) -> bool:
    return any(answer_in(answer, f"{p.title} {p.text}") for p in passages)


@register
class Verify(LLMModule[VerifyInput, VerifyOutput, VerifyParams]):
    name = "verify"
    purpose = "Judge whether the passages support the answer to the question (+ reason)."
    LLMOutput = EmittedVerdict
    max_tokens = 96
    prompt = PromptTemplate(
        version="verify-v1",
        system=(
            "You check answers. Say whether the passages state the given answer to the "
            "question. Give a short reason, then grounded true or false."
        ),
        user="Passages:\n{passages}\n\nQuestion: {question}\nAnswer: {answer}\n"
             "Is the answer supported by the passages? Reply as JSON.",
    )

    @classmethod
    def trace_summary(cls, output: dict[str, Any]) -> str:
        from rich.markup import escape

        mark = "[green]grounded[/]" if output.get("grounded") else "[red]not grounded[/]"
        return f"{mark}: {escape(str(output.get('reason', '')))}"

    def prompt_fields(self, inp: VerifyInput) -> dict[str, str]:
        shown = inp.passages[: self.params.max_passages]
        return {"passages": format_passages(shown, self.params.max_passage_chars) or "(none)",
                "question": inp.question, "answer": inp.answer}

    def run(self, inp: VerifyInput, ctx: ModuleContext) -> VerifyOutput:
        if self.params.mode == "disabled":
            return VerifyOutput(grounded=True, reason="verification is disabled")
        if is_abstention(inp.answer):
            return VerifyOutput(grounded=False, reason="no answer was found")
        if self.params.mode == "containment":
            found = answer_in_passages(inp.answer, inp.passages)
            return VerifyOutput(grounded=found, reason="answer text occurs in a passage"
                                if found else "answer text occurs in no passage")
        if not inp.passages:
            return VerifyOutput(grounded=False, reason="no passages to support the answer")
        return super().run(inp, ctx)

"""Question decomposition: a multi-hop question -> ordered sub-questions.

Later sub-questions may refer to earlier answers as ``#1``, ``#2`` (filled in by
``construct_question``). Given the hops already answered, it re-plans only the remaining
sub-questions (used after a hop fails verification). With ``enabled: false`` it returns the
question itself without an LLM call - the "no decomposition" ablation.

Usage::

    Decompose(max_sub_questions=3)({"question": "Where was the director of Jaws born?"})
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from compose.module import LLMModule, PromptTemplate
from compose.registry import register
from compose.runtime import ModuleContext

PLACEHOLDER = re.compile(r"#(\d+)")


class AnsweredHop(BaseModel):
    question: str
    answer: str


class DecomposeInput(BaseModel):
    question: str = Field(min_length=1)
    answered: list[AnsweredHop] = Field(
        default_factory=list, description="Hops already answered; only the rest is planned.")


class DecomposeOutput(BaseModel):
    sub_questions: list[str]


class DecomposeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_sub_questions: int = Field(default=3, ge=1, le=6)
    enabled: bool = True


class EmittedPlan(BaseModel):
    sub_questions: list[str] = Field(max_length=6)


def clean_plan(raw: list[str], question: str, limit: int, offset: int) -> list[str]:
    """Strip, de-duplicate, cap; drop references to hops that do not come earlier."""
    plan: list[str] = []
    for text in raw:
        text = " ".join(text.split())
        position = offset + len(plan) + 1
        refs = [int(n) for n in PLACEHOLDER.findall(text)]
        if not text or text in plan or any(n >= position or n < 1 for n in refs):
            continue
        plan.append(text)
        if len(plan) == limit:
            break
    return plan or [question]


@register
class Decompose(LLMModule[DecomposeInput, DecomposeOutput, DecomposeParams]):
    name = "decompose"
    purpose = "Split a question into ordered sub-questions; #k refers to the k-th answer."
    LLMOutput = EmittedPlan
    max_tokens = 160
    prompt = PromptTemplate(
        version="decompose-v1",
        system=(
            "You split a question into simple sub-questions, each answerable by looking up "
            "one fact. A later sub-question may use the answer of an earlier one, written as "
            "#1, #2. If the question is already simple, return it unchanged as the only "
            "sub-question.\nExample: \"Where was the director of Jaws born?\" -> "
            "[\"Who directed Jaws?\", \"Where was #1 born?\"]"
        ),
        user="{answered}Question: {question}\nReturn at most {limit} sub-questions as JSON.",
    )

    @classmethod
    def trace_summary(cls, output: dict[str, Any]) -> str:
        from rich.markup import escape

        return "sub-questions: " + " | ".join(map(escape, output["sub_questions"]))

    def prompt_fields(self, inp: DecomposeInput) -> dict[str, str]:
        answered = ""
        if inp.answered:
            lines = [f"#{i}: {h.question} -> {h.answer}" for i, h in
                     enumerate(inp.answered, start=1)]
            answered = ("Already answered:\n" + "\n".join(lines)
                        + "\nList only the sub-questions still needed.\n")
        return {"answered": answered, "question": inp.question,
                "limit": str(self.params.max_sub_questions)}

    def run(self, inp: DecomposeInput, ctx: ModuleContext) -> DecomposeOutput:
        done = [h.question for h in inp.answered]
        if not self.params.enabled:
            return DecomposeOutput(sub_questions=done or [inp.question])
        return super().run(inp, ctx)

    def emitted_from_output(self, inp: DecomposeInput, out: DecomposeOutput) -> EmittedPlan:
        return EmittedPlan(sub_questions=out.sub_questions[len(inp.answered):])

    def postprocess(self, inp: DecomposeInput, emitted: EmittedPlan) -> DecomposeOutput:
        done = [h.question for h in inp.answered]
        remaining = clean_plan(emitted.sub_questions, inp.question,
                               self.params.max_sub_questions, offset=len(done))
        return DecomposeOutput(sub_questions=[*done, *remaining])

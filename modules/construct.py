"""Question construction: a sub-question with placeholders -> a self-contained question.

``#k`` is replaced by the answer of hop k deterministically (reliable even with a tiny
model). With ``use_llm: true`` the generator then rewrites the filled question so that it
stands alone (resolving "he", "that film", ...), given the earlier hops.

Usage::

    ConstructQuestion()({"sub_question": "Where was #1 born?",
                         "previous": [{"question": "Who directed Jaws?",
                                       "answer": "Steven Spielberg"}]})
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from compose.module import LLMModule, PromptTemplate
from compose.modules.decompose import PLACEHOLDER, AnsweredHop
from compose.registry import register
from compose.runtime import ModuleContext


class ConstructInput(BaseModel):
    sub_question: str = Field(min_length=1)
    previous: list[AnsweredHop] = Field(default_factory=list)


class ConstructOutput(BaseModel):
    question: str
    unresolved: list[int] = Field(
        default_factory=list, description="Placeholders that named no earlier hop.")


class ConstructParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    use_llm: bool = False


class EmittedQuestion(BaseModel):
    question: str = Field(min_length=3, max_length=300)


def fill_placeholders(text: str, previous: list[AnsweredHop]) -> tuple[str, list[int]]:
    unresolved: list[int] = []

    def substitute(match: re.Match[str]) -> str:
        k = int(match.group(1))
        if 1 <= k <= len(previous) and previous[k - 1].answer:
            return previous[k - 1].answer
        unresolved.append(k)
        return match.group(0)

    return PLACEHOLDER.sub(substitute, text), unresolved


@register
class ConstructQuestion(LLMModule[ConstructInput, ConstructOutput, ConstructParams]):
    name = "construct_question"
    purpose = "Fill #k placeholders with earlier answers to get a self-contained question."
    LLMOutput = EmittedQuestion
    max_tokens = 96
    prompt = PromptTemplate(
        version="construct-v1",
        system=(
            "Rewrite the question so that it can be understood on its own, using the facts "
            "already found. Keep it short. Do not answer it."
        ),
        user="Facts found:\n{facts}\nQuestion: {question}\nReturn the rewritten question as "
             "JSON.",
    )

    @classmethod
    def trace_summary(cls, output: dict[str, Any]) -> str:
        from rich.markup import escape

        return f"question: {escape(output['question'])}"

    def prompt_fields(self, inp: ConstructInput) -> dict[str, str]:
        filled, _ = fill_placeholders(inp.sub_question, inp.previous)
        facts = "\n".join(f"- {h.question} {h.answer}" for h in inp.previous)
        return {"facts": facts, "question": filled}

    def run(self, inp: ConstructInput, ctx: ModuleContext) -> ConstructOutput:
        filled, unresolved = fill_placeholders(inp.sub_question, inp.previous)
        if not self.params.use_llm or not inp.previous:
            return ConstructOutput(question=filled, unresolved=unresolved)
        rewritten = super().run(inp, ctx)
        return rewritten.model_copy(update={"unresolved": unresolved})

    def postprocess(self, inp: ConstructInput, emitted: EmittedQuestion) -> ConstructOutput:
        return ConstructOutput(question=emitted.question.strip())

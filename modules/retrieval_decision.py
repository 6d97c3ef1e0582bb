"""Retrieval decision: does this (sub-)question need a lookup, given the evidence so far?

``always_retrieve: true`` skips the LLM and always retrieves - the "no retrieval decision"
ablation (and the safe choice for a model too small to judge its own knowledge).

Usage::

    RetrievalDecision()({"question": "Who designed the Velmora Bridge?", "evidence": []})
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from compose.module import LLMModule, PromptTemplate
from compose.modules.decompose import AnsweredHop
from compose.registry import register
from compose.runtime import ModuleContext


class DecisionInput(BaseModel):
    question: str = Field(min_length=1)
    evidence: list[AnsweredHop] = Field(default_factory=list,
                                        description="Earlier hops: the facts found so far.")


class DecisionOutput(BaseModel):
    retrieve: bool
    reason: str = ""


class DecisionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    always_retrieve: bool = False


class EmittedDecision(BaseModel):
    reason: str = Field(max_length=120)
    retrieve: bool


@register
class RetrievalDecision(LLMModule[DecisionInput, DecisionOutput, DecisionParams]):
    name = "retrieval_decision"
    purpose = "Decide whether a question needs retrieval given the evidence gathered so far."
    LLMOutput = EmittedDecision
    max_tokens = 80
    prompt = PromptTemplate(
        version="decide-v1",
        system=(
            "Decide if a search of the document collection is needed to answer the question. "
            "Search unless the facts below already contain the answer. Give a short reason, "
            "then retrieve true or false."
        ),
        user="Facts so far:\n{evidence}\nQuestion: {question}\nAnswer as JSON.",
    )

    @classmethod
    def trace_summary(cls, output: dict[str, Any]) -> str:
        from rich.markup import escape

        decided = "retrieve" if output["retrieve"] else "no retrieval"
        return f"{decided}: {escape(output.get('reason', ''))}"

    def prompt_fields(self, inp: DecisionInput) -> dict[str, str]:
        evidence = "\n".join(f"- {h.question} {h.answer}" for h in inp.evidence) or "(none)"
        return {"evidence": evidence, "question": inp.question}

    def run(self, inp: DecisionInput, ctx: ModuleContext) -> DecisionOutput:
        if self.params.always_retrieve:
            return DecisionOutput(retrieve=True, reason="always_retrieve is set")
        return super().run(inp, ctx)

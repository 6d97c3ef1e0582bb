"""Final synthesis: the original question + every hop -> final answer with citations, or an
abstention when the chain is not grounded (the policy is a param).

A one-hop chain needs no synthesis call: its answer is the final answer.

Usage::

    Synthesize(policy="abstain_if_any_ungrounded")({"question": "...", "hops": [...]})
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from compose.module import LLMModule, ModuleContext, PromptTemplate
from compose.modules.answer import UNKNOWN
from compose.modules.hops import Hop
from compose.registry import register


class SynthesizeInput(BaseModel):
    question: str = Field(min_length=1)
    hops: list[Hop] = Field(default_factory=list)


class SynthesizeOutput(BaseModel):
    answer: str
    citations: list[str] = Field(default_factory=list)
    abstained: bool = False
    ungrounded_hops: list[int] = Field(default_factory=list, description="1-based hop numbers.")


class SynthesizeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: Literal["abstain_if_final_ungrounded", "abstain_if_any_ungrounded", "never"] = (
        "abstain_if_final_ungrounded")
    single_hop_shortcut: bool = True


class EmittedFinal(BaseModel):
    answer: str = Field(max_length=80)


@register
class Synthesize(LLMModule):
    name = "synthesize"
    purpose = "Combine the hops into a final answer with citations, or abstain if ungrounded."
    Input = SynthesizeInput
    Output = SynthesizeOutput
    Params = SynthesizeParams
    LLMOutput = EmittedFinal
    max_tokens = 48
    prompt = PromptTemplate(
        version="synthesize-v1",
        system=(
            "You answer a question from facts that were already found. Reply with a short "
            "phrase: a name, a place, a date, a number, or yes/no."
        ),
        user="Facts found:\n{facts}\n\nQuestion: {question}\nGive the final short answer as "
             "JSON.",
    )

    def prompt_fields(self, inp: SynthesizeInput) -> dict[str, str]:
        facts = "\n".join(f"{i}. {hop.question} -> {hop.answer}"
                          for i, hop in enumerate(inp.hops, start=1))
        return {"facts": facts or "(none)", "question": inp.question}

    def run(self, inp: SynthesizeInput, ctx: ModuleContext) -> SynthesizeOutput:
        ungrounded = [i for i, hop in enumerate(inp.hops, start=1) if not hop.grounded]
        citations = list(dict.fromkeys(c for hop in inp.hops if hop.grounded
                                       for c in hop.citations))
        policy = self.params.policy
        if not inp.hops or (policy == "abstain_if_any_ungrounded" and ungrounded) or (
                policy == "abstain_if_final_ungrounded" and len(inp.hops) in ungrounded):
            return SynthesizeOutput(answer=UNKNOWN, citations=citations, abstained=True,
                                    ungrounded_hops=ungrounded)
        if len(inp.hops) == 1 and self.params.single_hop_shortcut:
            answer = inp.hops[0].answer
        else:
            answer = super().run(inp, ctx).answer
        return SynthesizeOutput(answer=answer, citations=citations, abstained=False,
                                ungrounded_hops=ungrounded)

    def postprocess(self, inp: SynthesizeInput, emitted: EmittedFinal) -> SynthesizeOutput:
        return SynthesizeOutput(answer=emitted.answer.strip())

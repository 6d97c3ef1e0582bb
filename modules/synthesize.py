"""Final synthesis: the original question + every hop -> final answer with citations, or an
abstention when the chain is not grounded (the policy is a param).

A one-hop chain needs no synthesis call: its answer is the final answer.

``reader: facts`` (the default) asks for the answer from the hop answers alone; ``reader:
passages`` reads the original question over the hops' evidence passages with the ``answer``
module's own prompt. A small model reads far better than it reasons over a list of facts, and
the reading prompt is the one module tuning trains most, so on the embedded model the final
step becomes the job it does best, with the hops' retrieval supplying the bridge passages
that one retrieval for the whole question misses. ``question_passages`` adds passages
retrieved for the whole question, after the hops' evidence or (``question_passages_first``)
before it, so a chain whose hops went astray still reads what naive RAG would have read.

When the graph streams its final answer, either call streams the answer as it is generated
(the reader through the ``answer`` module, with this module's context); an abstention or the
one-hop shortcut, which make no call, arrive as one piece when the node ends.

Usage::

    Synthesize(policy="abstain_if_any_ungrounded")({"question": "...", "hops": [...]})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from compose.corpus import Passage
from compose.module import LLMModule, PromptTemplate
from compose.modules.answer import Answer
from compose.modules.hops import Hop
from compose.registry import register
from compose.runtime import ModuleContext
from compose.text import UNKNOWN


class SynthesizeInput(BaseModel):
    question: str = Field(min_length=1)
    hops: list[Hop] = Field(default_factory=list)
    question_passages: list[Passage] = Field(
        default_factory=list, description="Passages retrieved for the whole question; the "
        "passages reader adds the first ``question_passages`` of them to the hops' evidence.")


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
    reader: Literal["facts", "passages"] = "facts"
    max_passages: int = Field(default=5, ge=1,
                              description="With reader passages: how many passages are "
                                          "read, in reading order.")
    question_passages: int = Field(
        default=0, ge=0, description="With reader passages: how many of the passages "
        "retrieved for the whole question are read with the hops' evidence (0: none).")
    question_passages_first: bool = Field(
        default=False, description="Read the whole question's passages before the hops' "
        "evidence instead of after it.")


class EmittedFinal(BaseModel):
    answer: str = Field(max_length=80)


def evidence(hops: list[Hop], extra: Sequence[Passage] = (), *,
             extra_first: bool = False) -> list[Passage]:
    """Each hop's kept passages (its citations, else its top two) and ``extra`` (after them,
    or before them with ``extra_first``), first seen first."""
    hop_passages = [p for hop in hops for p in hop.passages]
    seen: dict[str, Passage] = {}
    for passage in ([*extra, *hop_passages] if extra_first else [*hop_passages, *extra]):
        seen.setdefault(passage.id, passage)
    return list(seen.values())


@register
class Synthesize(LLMModule[SynthesizeInput, SynthesizeOutput, SynthesizeParams]):
    name = "synthesize"
    purpose = "Combine the hops into a final answer with citations, or abstain if ungrounded."
    LLMOutput = EmittedFinal
    max_tokens = 48
    streams_field = "answer"
    prompt = PromptTemplate(
        version="synthesize-v1",
        system=(
            "You answer a question from facts that were already found. Reply with a short "
            "phrase: a name, a place, a date, a number, or yes/no."
        ),
        user="Facts found:\n{facts}\n\nQuestion: {question}\nGive the final short answer as "
             "JSON.",
    )

    @classmethod
    def trace_summary(cls, output: dict[str, Any]) -> str:
        from rich.markup import escape

        said = ("[yellow]abstained[/]" if output.get("abstained") else
                f"final answer: [bold]{escape(output['answer'])}[/]")
        return f"{said} cites {output.get('citations')}"

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
        elif self.params.reader == "passages":
            extra = inp.question_passages[: self.params.question_passages]
            read = Answer(max_passages=self.params.max_passages)(
                {"question": inp.question,
                 "passages": evidence(inp.hops, extra,
                                      extra_first=self.params.question_passages_first)}, ctx)
            return SynthesizeOutput(answer=read.answer, citations=read.citations,
                                    abstained=read.is_unknown, ungrounded_hops=ungrounded)
        else:
            answer = super().run(inp, ctx).answer
        return SynthesizeOutput(answer=answer, citations=citations, abstained=False,
                                ungrounded_hops=ungrounded)

    def postprocess(self, inp: SynthesizeInput, emitted: EmittedFinal) -> SynthesizeOutput:
        return SynthesizeOutput(answer=emitted.answer.strip())

"""Hop bookkeeping for multi-hop graphs (no LLM): start the next hop, record a finished one.

``next_hop`` also clears the per-hop scratch fields (query, passages, verdict) so that a new
hop never sees the previous hop's failed query or failure reason.

Usage (from YAML)::

    next_hop: {module: next_hop}
    record_hop: {module: record_hop, inputs: {question: hop_question, answer: hop_answer}}
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from compose.corpus import Passage
from compose.module import Module, NoParams
from compose.registry import register
from compose.runtime import ModuleContext


class HopFields(BaseModel):
    """What one hop produced, as the graph's state holds it."""

    sub_question: str
    question: str = Field(description="The self-contained question actually asked.")
    queries: list[str] = Field(default_factory=list)
    passages: list[Passage] = Field(default_factory=list)
    answer: str = ""
    citations: list[str] = Field(default_factory=list)
    grounded: bool = False
    reason: str = ""


class Hop(HopFields):
    """One answered (or failed) sub-question of a multi-hop chain. ``passages`` keeps only the
    cited evidence (or the top two); ``passage_ids`` lists everything that was retrieved."""

    passage_ids: list[str] = Field(default_factory=list)


class NextHopInput(BaseModel):
    sub_questions: list[str]
    hops: list[Hop] = Field(default_factory=list)


class NextHopOutput(BaseModel):
    hop_index: int
    sub_question: str
    done: bool
    query: str | None = None
    queries: list[str] = Field(default_factory=list)
    passages: list[Passage] = Field(default_factory=list)
    verify_reason: str | None = None


@register
class NextHop(Module[NextHopInput, NextHopOutput, NoParams]):
    name = "next_hop"
    purpose = "Pick the next unanswered sub-question and clear the per-hop scratch fields."
    cacheable = False

    def run(self, inp: NextHopInput, ctx: ModuleContext) -> NextHopOutput:
        index = len(inp.hops)
        done = index >= len(inp.sub_questions)
        return NextHopOutput(
            hop_index=index,
            sub_question="" if done else inp.sub_questions[index],
            done=done,
        )


class RecordHopInput(HopFields):
    hops: list[Hop] = Field(default_factory=list)


class RecordHopOutput(BaseModel):
    hops: list[Hop]


@register
class RecordHop(Module[RecordHopInput, RecordHopOutput, NoParams]):
    name = "record_hop"
    purpose = "Append the finished hop (question, queries, evidence, answer, verdict) to hops."
    cacheable = False

    def run(self, inp: RecordHopInput, ctx: ModuleContext) -> RecordHopOutput:
        hop = Hop(
            sub_question=inp.sub_question,
            question=inp.question,
            queries=inp.queries,
            passage_ids=[p.id for p in inp.passages],
            passages=[p for p in inp.passages if p.id in inp.citations] or inp.passages[:2],
            answer=inp.answer,
            citations=inp.citations,
            grounded=inp.grounded,
            reason=inp.reason,
        )
        return RecordHopOutput(hops=[*inp.hops, hop])

"""VERDICT's verified diversification: ambiguous question + passages -> grounded readings.

Instead of inventing interpretations first and searching for them afterwards (errors
cascade), VERDICT asks the generator, once per retrieved passage, for at most one
disambiguated question that this passage alone answers, with the answer - or an abstention.
Every surviving reading is grounded by construction: (question, answer, passage).

Two checks without an LLM back the generator's own abstention, which a very small model
does not give (SmolLM2-135M answered every off-topic passage in our trials, whatever the
prompt): a passage whose similarity to the question is below ``min_relevance`` is skipped
without a call (retriever feedback), and an answer that does not occur in the passage counts
as an abstention. A "question" that is not one (small models often copy a passage sentence)
is replaced by the ambiguous question, so the reading is told apart by its answer alone.

``diversify_passage`` is the per-passage step; ``verified_diversify`` runs it over the top-k
passages. Each passage is an independent call with its own cache entry. With the one local
llama.cpp model the calls are serialized (``max_concurrency: 1``, the default): the model
holds a lock, so threads would only queue, and llama.cpp's own threads already use every core.
A higher ``max_concurrency`` sends that many calls at once, which pays off with an
OpenAI-compatible server that batches requests (vLLM).

Consolidation of the readings (``consolidate``), the diversify-then-verify baseline
(``interpret`` and its bookkeeping) and the checks on interpretations (``keep_verified``,
``verify_interpretations``) live in their own files, each loaded when a graph names it.

Usage::

    from compose.modules.verdict import VerifiedDiversify
    out = VerifiedDiversify(k=5)({"question": "Who has the most goals in football?",
                                  "passages": passages}, ctx)
    [(i.question, i.answer, i.passage.id) for i in out.interpretations]
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, ConfigDict, Field

from compose.corpus import Passage
from compose.module import LLMModule, Module, PromptTemplate
from compose.modules.interpretation import Interpretation
from compose.registry import register
from compose.retrieval.encoder import DEFAULT_ENCODER, embed, passage_text
from compose.runtime import COST_FIELDS, ModuleContext
from compose.structured import StructuredOutputError
from compose.text import NO_ANSWERS, answer_in, is_abstention

ABSTAIN = "null"
ABSTAIN_WORDS = NO_ANSWERS | {"none", ABSTAIN}
"""What counts as the generator abstaining: no answer, "none", or the prompt's word."""


class DiversifyPassageInput(BaseModel):
    question: str = Field(min_length=1)
    passage: Passage


class DiversifyPassageOutput(BaseModel):
    interpretation: Interpretation | None = Field(
        default=None, description="None when the generator abstained.")
    reason: str = Field(default="", description="Why nothing was kept, when nothing was.")


class DiversifyPassageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_passage_chars: int = Field(default=700, ge=50, description="The passage is cut here.")
    require_answer_in_passage: bool = Field(
        default=True,
        description="Treat an answer whose text does not occur in the passage as an "
        "abstention: the reading must rest on this passage alone.")
    min_relevance: float = Field(
        default=0.2, ge=-1.0, le=1.0,
        description="Abstain without a generator call when the cosine similarity of the "
        "question and the passage (the project's encoder) is below this; -1 turns it off.")
    encoder: str = DEFAULT_ENCODER


class EmittedReading(BaseModel):
    question: str = Field(max_length=200)
    answer: str = Field(max_length=80)


@register
class DiversifyPassage(LLMModule[DiversifyPassageInput, DiversifyPassageOutput,
                                 DiversifyPassageParams]):
    name = "diversify_passage"
    purpose = ("Ambiguous question + one passage -> one disambiguated question this passage "
               "answers, with the answer, or an abstention.")
    LLMOutput = EmittedReading
    max_tokens = 96
    prompt = PromptTemplate(
        version="diversify-passage-v1",
        system=(
            "A question can be ambiguous: it may have several readings. You read one passage. "
            "If the passage answers one reading of the question, write that reading as a "
            "specific question and give its short answer, copied from the passage. If the "
            f"passage does not answer the question at all, write \"{ABSTAIN}\" as both the "
            "question and the answer."
        ),
        user="Passage: {passage}\n\nAmbiguous question: {question}\n"
             "Reply as JSON with the specific question and its answer.",
    )

    def run(self, inp: DiversifyPassageInput, ctx: ModuleContext) -> DiversifyPassageOutput:
        if self.params.min_relevance > -1.0:
            question, passage = embed([inp.question, passage_text(inp.passage.title,
                                                                  inp.passage.text)],
                                      self.params.encoder)
            relevance = float(question @ passage)
            if relevance < self.params.min_relevance:
                return DiversifyPassageOutput(
                    reason=f"the passage is off-topic (similarity {relevance:.2f})")
        return super().run(inp, ctx)

    def prompt_fields(self, inp: DiversifyPassageInput) -> dict[str, str]:
        text = inp.passage.text
        if len(text) > self.params.max_passage_chars:
            text = text[: self.params.max_passage_chars] + "..."
        shown = f"{inp.passage.title}: {text}" if inp.passage.title else text
        return {"passage": shown, "question": inp.question}

    def postprocess(self, inp: DiversifyPassageInput,
                    emitted: EmittedReading) -> DiversifyPassageOutput:
        question, answer = " ".join(emitted.question.split()), emitted.answer.strip()
        if is_abstention(question, ABSTAIN_WORDS) or is_abstention(answer, ABSTAIN_WORDS):
            return DiversifyPassageOutput(reason="the generator abstained")
        if not question.endswith("?"):  # a copied passage sentence, not a reading
            question = inp.question
        if self.params.require_answer_in_passage and not answer_in(
                answer, f"{inp.passage.title} {inp.passage.text}"):
            return DiversifyPassageOutput(reason="the answer does not occur in the passage")
        return DiversifyPassageOutput(interpretation=Interpretation(
            question=question, answer=answer, passage=inp.passage))


class VerifiedDiversifyInput(BaseModel):
    question: str = Field(min_length=1)
    passages: list[Passage] = Field(default_factory=list)


class VerifiedDiversifyOutput(BaseModel):
    interpretations: list[Interpretation] = Field(default_factory=list)
    abstentions: int = Field(default=0, description="Passages that yielded no reading.")
    unparsable: int = Field(default=0, description="Passages whose reply never parsed.")


class VerifiedDiversifyParams(DiversifyPassageParams):
    k: int = Field(default=5, ge=1, le=50, description="How many of the passages to read.")
    max_concurrency: int = Field(
        default=1, ge=1, le=32,
        description="Passages in flight at once; 1 serializes (right for one local model).")


@register
class VerifiedDiversify(Module[VerifiedDiversifyInput, VerifiedDiversifyOutput,
                               VerifiedDiversifyParams]):
    name = "verified_diversify"
    purpose = ("Run diversify_passage over the top-k passages (bounded concurrency) and keep "
               "the grounded readings, in passage order.")
    cacheable = False  # each per-passage call is cached on its own

    def run(self, inp: VerifiedDiversifyInput, ctx: ModuleContext) -> VerifiedDiversifyOutput:
        step = DiversifyPassage(self.params.model_dump(exclude={"k", "max_concurrency"}))
        passages = inp.passages[: self.params.k]

        def read(passage: Passage) -> tuple[DiversifyPassageOutput | None, ModuleContext]:
            sub = ctx.fresh()
            try:
                return step({"question": inp.question, "passage": passage}, sub), sub
            except StructuredOutputError:  # dropped, as the method prescribes; counted
                return None, sub

        if self.params.max_concurrency == 1 or len(passages) < 2:
            results = [read(p) for p in passages]
        else:
            with ThreadPoolExecutor(max_workers=self.params.max_concurrency) as pool:
                results = list(pool.map(read, passages))
        for _, sub in results:
            merge_stats(ctx, sub)
        ctx.stats.cache_hit = bool(results) and all(sub.stats.cache_hit for _, sub in results)
        kept = [out.interpretation for out, _ in results if out and out.interpretation]
        unparsable = sum(1 for out, _ in results if out is None)
        return VerifiedDiversifyOutput(interpretations=kept, unparsable=unparsable,
                                       abstentions=len(results) - len(kept) - unparsable)


def merge_stats(ctx: ModuleContext, sub: ModuleContext) -> None:
    """Add a sub-call's cost to the node's, so the trace and eval tables count it."""
    for field in (*COST_FIELDS, "generator_s", "retriever_s"):
        setattr(ctx.stats, field, getattr(ctx.stats, field) + getattr(sub.stats, field))

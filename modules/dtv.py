"""The diversify-then-verify baseline: interpret first, then search, answer and verify each.

``interpret`` asks the generator alone for the readings of an ambiguous question; the graph
(``graphs/dtv.yaml``) then loops over them with ``next_interpretation`` -> retrieve -> answer
-> verify -> ``record_interpretation``, so the standard retrieve/answer/verify modules are
reused unchanged and each reading's cost shows up per node in the trace. VERDICT exists to
avoid this pipeline's weak point: a reading the generator invents may have no support in the
corpus, and that error is only caught (or not) at the end.

Usage::

    from compose.modules.dtv import Interpret
    Interpret(max_interpretations=3)({"question": "Who won the world cup?"}).interpretations
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from compose.corpus import Passage
from compose.module import LLMModule, Module, NoParams, PromptTemplate
from compose.modules.interpretation import Interpretation
from compose.registry import register
from compose.runtime import ModuleContext
from compose.text import answer_tokens, normalize_answer


class InterpretInput(BaseModel):
    question: str = Field(min_length=1)


class InterpretOutput(BaseModel):
    interpretations: list[str]


class InterpretParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_interpretations: int = Field(default=3, ge=1, le=6)
    min_overlap: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="Share of the question's words a reading must keep: a reading only adds "
        "detail. Small models otherwise copy the prompt's example as a reading.")


class EmittedReadings(BaseModel):
    interpretations: list[str] = Field(max_length=6)


def clean_readings(raw: list[str], question: str, limit: int, min_overlap: float) -> list[str]:
    """Keep what reads as a question and keeps enough of the question's words; drop repeats
    (after normalisation) and cap. The question itself when nothing remains."""
    words = set(answer_tokens(question))
    readings: dict[str, str] = {}
    for text in raw:
        text = " ".join(text.split())
        key = normalize_answer(text)
        kept = len(words & set(key.split())) / (len(words) or 1)
        if text.endswith("?") and kept >= min_overlap:
            readings.setdefault(key, text)
    return list(readings.values())[:limit] or [question]


@register
class Interpret(LLMModule[InterpretInput, InterpretOutput, InterpretParams]):
    name = "interpret"
    purpose = "Ambiguous question -> candidate specific readings, from the generator alone."
    LLMOutput = EmittedReadings
    max_tokens = 160
    prompt = PromptTemplate(
        version="interpret-v1",
        system=(
            "A question can be ambiguous: it may ask about different people, times, places "
            "or senses of a word. List the different specific questions it could mean, each "
            "one a complete question.\nExample: \"Who won the world cup?\" -> "
            "[\"Who won the 2018 FIFA men's World Cup?\", \"Who won the 2019 FIFA Women's "
            "World Cup?\"]"
        ),
        user="Question: {question}\nReply as JSON with the list of specific questions.",
    )

    def prompt_fields(self, inp: InterpretInput) -> dict[str, str]:
        return {"question": inp.question}

    def postprocess(self, inp: InterpretInput, emitted: EmittedReadings) -> InterpretOutput:
        return InterpretOutput(interpretations=clean_readings(
            emitted.interpretations, inp.question, self.params.max_interpretations,
            self.params.min_overlap))


class NextInterpretationInput(BaseModel):
    readings: list[str]
    candidates: list[Interpretation] = Field(default_factory=list)


class NextInterpretationOutput(BaseModel):
    reading: str
    done: bool


@register
class NextInterpretation(Module[NextInterpretationInput, NextInterpretationOutput, NoParams]):
    name = "next_interpretation"
    purpose = "Pick the next reading that has not been answered yet (done when none is left)."
    cacheable = False

    def run(self, inp: NextInterpretationInput,
            ctx: ModuleContext) -> NextInterpretationOutput:
        index = len(inp.candidates)
        done = index >= len(inp.readings)
        return NextInterpretationOutput(reading="" if done else inp.readings[index], done=done)


class RecordInterpretationInput(BaseModel):
    reading: str
    answer: str
    citations: list[str] = Field(default_factory=list)
    passages: list[Passage] = Field(min_length=1)
    grounded: bool
    candidates: list[Interpretation] = Field(default_factory=list)


class RecordInterpretationOutput(BaseModel):
    candidates: list[Interpretation]


@register
class RecordInterpretation(Module[RecordInterpretationInput, RecordInterpretationOutput,
                                  NoParams]):
    name = "record_interpretation"
    purpose = ("Append the answered reading with its cited passage (the top passage when "
               "nothing was cited) and its verdict to the candidates.")
    cacheable = False

    def run(self, inp: RecordInterpretationInput,
            ctx: ModuleContext) -> RecordInterpretationOutput:
        cited = [p for p in inp.passages if p.id in inp.citations]
        passage = (cited or inp.passages)[0]
        item = Interpretation(question=inp.reading, answer=inp.answer,
                              passage=Passage(id=passage.id, title=passage.title,
                                              text=passage.text),
                              verified=inp.grounded)
        return RecordInterpretationOutput(candidates=[*inp.candidates, item])

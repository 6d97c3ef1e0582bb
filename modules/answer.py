"""Answer generation: (sub-)question + passages -> short answer with cited passage ids.

Passages are shown to the model under short numeric labels ([1], [2], ...) because small
models copy a number far more reliably than an opaque id; the labels are mapped back to
passage ids afterwards, and labels that point at no passage are dropped. With no passages the
same module answers closed-book. With ``choices`` (say yes/no/maybe for PubMedQA) the answer
is decoded under that enum, so a baseline answers in the benchmark's label space.

Usage::

    from compose.modules.answer import Answer
    out = Answer()({"question": "Who designed the Velmora Bridge?", "passages": [...]})
    out.answer, out.citations
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from compose.corpus import Passage
from compose.module import LLMModule, PromptTemplate
from compose.registry import register
from compose.text import UNKNOWN, is_unknown_reply


class AnswerInput(BaseModel):
    question: str = Field(min_length=1)
    passages: list[Passage] = Field(default_factory=list)


class AnswerOutput(BaseModel):
    answer: str
    citations: list[str] = Field(default_factory=list, description="Ids of passages used.")
    is_unknown: bool = False


class AnswerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_passage_chars: int = Field(default=700, ge=50, description="Each passage is cut here.")
    max_passages: int = Field(default=5, ge=0)
    choices: list[str] | None = Field(
        default=None, min_length=2,
        description="Answer with exactly one of these labels (e.g. [\"yes\", \"no\", "
        "\"maybe\"]; quote them in YAML, where bare yes/no are booleans).")


class EmittedAnswer(BaseModel):
    answer: str = Field(max_length=80)
    citations: list[int] = Field(default_factory=list, max_length=5)


def format_passages(passages: list[Passage], max_chars: int) -> str:
    blocks = []
    for label, passage in enumerate(passages, start=1):
        text = passage.text if len(passage.text) <= max_chars else passage.text[:max_chars] + "..."
        blocks.append(f"[{label}] {passage.title}: {text}" if passage.title else
                      f"[{label}] {text}")
    return "\n".join(blocks)


@register
class Answer(LLMModule[AnswerInput, AnswerOutput, AnswerParams]):
    name = "answer"
    purpose = "Answer a question briefly from passages (or closed-book), citing passage ids."
    LLMOutput = EmittedAnswer
    max_tokens = 96
    streams_field = "answer"
    prompt = PromptTemplate(
        version="answer-v1",
        system=(
            "You answer questions with a short phrase: a name, a place, a date, a number, or "
            "yes/no. {context_rule}"
        ),
        user="{context}Question: {question}\nGive the short answer as JSON.",
    )

    def emitted_model(self) -> type[BaseModel]:
        if not self.params.choices:
            return EmittedAnswer
        return create_model("EmittedChoice", __base__=EmittedAnswer,
                            answer=(Literal[tuple(self.params.choices)], ...))

    @classmethod
    def trace_summary(cls, output: dict[str, Any]) -> str:
        from rich.markup import escape

        return f"answer: [bold]{escape(output['answer'])}[/] cites {output.get('citations')}"

    def prompt_fields(self, inp: AnswerInput) -> dict[str, str]:
        passages = inp.passages[: self.params.max_passages]
        choices = self.params.choices
        choice_rule = f" Answer with exactly one of: {', '.join(choices)}." if choices else ""
        if not passages:
            return {
                "context_rule": "Answer from your own knowledge. Leave citations empty."
                + choice_rule,
                "context": "",
                "question": inp.question,
            }
        unknown_rule = (choice_rule if choices else
                        f" If they do not contain the answer, answer \"{UNKNOWN}\".")
        return {
            "context_rule": (
                "Use only the numbered passages. In citations, list the numbers of the "
                "passages you used." + unknown_rule
            ),
            "context": "Passages:\n"
            + format_passages(passages, self.params.max_passage_chars) + "\n\n",
            "question": inp.question,
        }

    def emitted_from_output(self, inp: AnswerInput, out: AnswerOutput) -> BaseModel:
        labels = {p.id: i for i, p in enumerate(inp.passages[: self.params.max_passages], 1)}
        return self.emitted_model().model_validate(
            {"answer": out.answer, "citations": [labels[c] for c in out.citations
                                                 if c in labels]})

    def postprocess(self, inp: AnswerInput, emitted: EmittedAnswer) -> AnswerOutput:
        passages = inp.passages[: self.params.max_passages]
        cited: list[str] = []
        for label in emitted.citations:
            if 1 <= label <= len(passages) and passages[label - 1].id not in cited:
                cited.append(passages[label - 1].id)
        answer = emitted.answer.strip()
        return AnswerOutput(
            answer=answer,
            citations=cited,
            is_unknown=is_unknown_reply(answer),
        )

"""Query rewriting: (sub-)question -> search query; on a retry, also the failed query and
the verifier's reason, so the new query can avoid what went wrong.

``mode: passthrough`` uses the question itself as the query (no LLM call).

Usage::

    RewriteQuery()({"question": "Where was Ilse Ranneth born?",
                    "failed_query": "Ranneth", "failure_reason": "passages do not say"})
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from compose.module import LLMModule, PromptTemplate
from compose.registry import register
from compose.runtime import ModuleContext


class RewriteInput(BaseModel):
    question: str = Field(min_length=1)
    failed_query: str | None = None
    failure_reason: str | None = None
    queries: list[str] = Field(default_factory=list, description="Queries tried in this hop.")


class RewriteOutput(BaseModel):
    query: str
    queries: list[str] = Field(description="All queries of this hop, this one last.")


class RewriteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["llm", "passthrough"] = "llm"
    first_query: Literal["llm", "question"] = Field(
        default="question",
        description="The first query of a hop: the question itself (robust) or an LLM rewrite.")


class EmittedQuery(BaseModel):
    query: str = Field(min_length=2, max_length=200)


@register
class RewriteQuery(LLMModule[RewriteInput, RewriteOutput, RewriteParams]):
    name = "rewrite_query"
    purpose = "Write a search query for a question, learning from a failed query on retry."
    LLMOutput = EmittedQuery
    max_tokens = 64
    prompt = PromptTemplate(
        version="rewrite-v1",
        system=(
            "You write short keyword search queries for a document collection. Name the "
            "entities and the fact you need."
        ),
        user="{retry}Question: {question}\nReturn a new search query as JSON.",
    )

    @classmethod
    def trace_summary(cls, output: dict[str, Any]) -> str:
        from rich.markup import escape

        return f"query: {escape(output['query'])}"

    def prompt_fields(self, inp: RewriteInput) -> dict[str, str]:
        retry = ""
        if inp.failed_query:
            retry = (f"The search query \"{inp.failed_query}\" did not work: "
                     f"{inp.failure_reason or 'the answer was not supported'}.\n")
        return {"retry": retry, "question": inp.question}

    def run(self, inp: RewriteInput, ctx: ModuleContext) -> RewriteOutput:
        first = not inp.failed_query
        if self.params.mode == "passthrough" or (first and self.params.first_query ==
                                                 "question"):
            query = inp.question
        else:
            query = super().run(inp, ctx).query
        if query in inp.queries:  # a retry must not repeat the same search
            query = f"{inp.question} {query}"
        return RewriteOutput(query=query, queries=[*inp.queries, query])

    def postprocess(self, inp: RewriteInput, emitted: EmittedQuery) -> RewriteOutput:
        return RewriteOutput(query=emitted.query.strip(), queries=[])

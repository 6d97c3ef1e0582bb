"""Retrieval as a module: query in, ranked passages out (no LLM).

Usage::

    from compose.modules.retrieve import Retrieve
    out = Retrieve(k=5, mode="hybrid")({"query": "who designed the Velmora Bridge"}, ctx)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from compose.corpus import ScoredPassage
from compose.module import Module
from compose.registry import register
from compose.runtime import ModuleContext


class RetrieveInput(BaseModel):
    query: str = Field(min_length=1)


class RetrieveOutput(BaseModel):
    passages: list[ScoredPassage]


class RetrieveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(default=5, ge=1, le=100)
    mode: Literal["dense", "bm25", "hybrid"] | None = Field(
        default=None, description="None uses the graph's retriever.mode."
    )


@register
class Retrieve(Module[RetrieveInput, RetrieveOutput, RetrieveParams]):
    name = "retrieve"
    purpose = "Fetch the top-k passages for a query from the graph's index."
    retrieves = True

    @classmethod
    def trace_summary(cls, output: dict[str, Any]) -> str:
        titles = [f"{p.get('title') or p['id']}" for p in output.get("passages", [])]
        return "retrieved: " + "; ".join(titles) if titles else "retrieved nothing"

    def cache_identity(self, ctx: ModuleContext) -> str:
        return f"index={ctx.retriever.fingerprint}|mode={self.params.mode or ctx.retriever.mode}"

    def run(self, inp: RetrieveInput, ctx: ModuleContext) -> RetrieveOutput:
        return RetrieveOutput(passages=ctx.retrieve(inp.query, k=self.params.k,
                                                    mode=self.params.mode))

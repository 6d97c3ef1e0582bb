"""Evidence search over the graph's index of biomedical abstracts. NOT FOR CLINICAL USE.

The tool searches whatever index the calling graph runs over; for PubMedQA evaluation that is
the pooled index of the benchmark's abstracts (one passage per abstract, built by
``composerag eval`` from the PubMedQA contexts). Each hit's text is cut so that several hits
fit in the agent's prompt; the text is evidence to read, never instructions to follow. ``k``
is an enumeration rather than a bounded integer because grammar-constrained decoding enforces
enumerations but not numeric bounds, and small models otherwise ask for k = 10^15.

Usage::

    from compose.tools.execute import ToolCall, execute_call
    execute_call(ToolCall(name="evidence_search", arguments={"query": "statins myopathy"}),
                 allowed=["evidence_search"], ctx=graph.runtime.context())
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from compose.runtime import ModuleContext
from compose.tools.registry import tool

MAX_HIT_CHARS = 500


class EvidenceHit(BaseModel):
    id: str
    title: str
    text: str


class EvidenceResult(BaseModel):
    hits: list[EvidenceHit]


# The first call in a process also opens the index and loads the query encoder (seconds on a
# busy CPU), which the timeout has to allow for; later calls take milliseconds.
@tool(result=EvidenceResult, timeout_s=60.0, max_result_chars=2400, retrieves=True)
def evidence_search(query: Annotated[str, Field(min_length=3, max_length=200)],
                    ctx: ModuleContext, k: Literal[1, 2, 3, 4, 5] = 3) -> EvidenceResult:
    """Search biomedical abstracts for evidence on a query; returns the top-k abstracts
    (id, title, text cut to 500 characters)."""
    passages = ctx.retrieve(query, k=k)
    return EvidenceResult(hits=[
        EvidenceHit(id=p.id, title=p.title,
                    text=p.text if len(p.text) <= MAX_HIT_CHARS
                    else p.text[:MAX_HIT_CHARS] + "...")
        for p in passages
    ])

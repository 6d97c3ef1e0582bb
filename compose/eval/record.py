"""One evaluated question: the schema of a results-file line.

The field names are the file's JSON keys and the values its values, so a file written before
this model existed loads as it is, and a record written now is the line it always was (keys in
the same order; only the keys the record holds, see :meth:`EvalRecord.to_json`). Every field
has a default meaning "not recorded", for two reasons: older records lack some keys
(``abstained``, ``cited_texts``), which the runner fills in when it rescores them, and a
metric must be able to score a hand-built fragment. Keys this model does not know are kept.

Metrics read the attributes; ``None`` in an optional field means the record says nothing
(never judged, never retrieved, no disambiguations), which they score as "not applicable".

Usage::

    record = EvalRecord.model_validate(json.loads(line))
    record.prediction, record.metrics["f1"]
    line = json.dumps(record.to_json(), ensure_ascii=False)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EvalRecord(BaseModel):
    """One question's result: what was asked and expected, what the graph answered and cited,
    what it cost, and the metrics scored on it."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    question: str = ""
    answers: list[str] = Field(default_factory=list)
    gold_ids: list[str] = Field(default_factory=list)
    error: str | None = Field(default=None, description="Why the graph failed; the record is kept.")
    prediction: str = ""
    outputs: dict[str, Any] = Field(
        default_factory=dict, description="The graph's other declared outputs, as JSON.")
    citations: list[str] = Field(default_factory=list)
    abstained: bool | None = Field(
        default=None, description="None: an older record that did not say.")
    retrieved_ids: list[str] | None = Field(
        default=None, description="The first k passages of each retrieval; None: none ran.")
    cited_texts: list[str] | None = Field(
        default=None, description="'title text' of each cited passage; None: an older record.")
    judge_grounded: bool | None = Field(default=None, description="The verify module's verdict.")
    judge_llm_calls: int | None = None
    qa_pairs: list[dict[str, Any]] | None = Field(
        default=None, description="ASQA's disambiguations, each with its short_answers.")
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    generator_s: float = 0.0
    retriever_s: float = 0.0
    node_latency_s: dict[str, float] = Field(default_factory=dict)
    module_calls: int = 0
    cache_hits: int = 0
    wall_s: float = 0.0
    metrics: dict[str, float | None] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as its results-file line: the keys it was built or read with (and those
        set since), so optional keys it never had are not written as nulls."""
        return self.model_dump(exclude_unset=True)


def as_record(data: EvalRecord | Mapping[str, Any]) -> EvalRecord:
    """A record, from its JSON form (a results-file line of any version, or a fragment)."""
    return data if isinstance(data, EvalRecord) else EvalRecord.model_validate(data)

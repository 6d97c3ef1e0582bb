"""The settings of one evaluation run, defined once.

``composerag eval`` builds an :class:`EvalConfig` from its flags and ``run_eval`` from its
keywords; a Ray worker receives the driver's config whole (:meth:`EvalConfig.for_workers`).
The part that decides what a results file holds, :class:`RunSettings`, is also what its
sidecar ``OUT.meta.json`` records (:class:`ResultsMeta`), so that a resume with other
settings can be refused instead of mixing results.

Usage::

    config = EvalConfig(graph="naive_rag", dataset="demo", out=Path("runs/eval/x.jsonl"))
    run_evaluation(config)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Backend = Literal["local", "ray"]


class RunSettings(BaseModel):
    """What decides the records of a run: a resume must repeat these (``limit`` aside, so a
    run can be extended)."""

    graph: str = Field(description="Shipped graph name or YAML path.")
    dataset: str = Field(description="NAME:PATH of a benchmark, or 'demo'.")
    limit: int | None = Field(default=None, description="Only the first N questions.")
    overrides: list[str] = Field(default_factory=list, description="--set spec overrides.")
    recall_k: int = Field(default=5, description="k of retrieval recall@k.")
    judge: bool = Field(default=False, description="Ask the verify module about each final answer.")

    @field_validator("overrides", mode="before")
    @classmethod
    def _no_overrides(cls, value: Any) -> Any:
        return [] if value is None else value


class ResultsMeta(RunSettings):
    """The sidecar of a results file: the run settings, and what the graph resolved to."""

    spec_sha: str = Field(description="First 16 hex digits of the SHA-256 of the spec.")
    model: str = Field(description="The generator model the spec names.")


class EvalConfig(RunSettings):
    """One evaluation run: what to evaluate (:class:`RunSettings`) and how to run it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    out: Path = Field(description="The results JSONL (resumed when it exists).")
    cache: bool = Field(default=True, description="Use the module cache.")
    cache_path: str | None = Field(default=None, description="SQLite cache file.")
    index_root: Path | None = Field(default=None, description="Where pooled indexes live.")
    restart: bool = Field(default=False, description="Discard earlier results in out.")
    save_traces: bool = Field(default=False, description="Write each trace to OUT.traces.jsonl.")
    show_progress: bool = Field(default=True, description="Report progress on stderr.")
    backend: Backend = Field(default="local", description="local (this process) or ray.")
    workers: int = Field(default=1, description="Ray workers (each loads its own model).")
    ray_address: str | None = Field(default=None, description="Ray cluster to join; default: a "
                                    "private local instance.")
    retry_errors: bool = Field(default=False, description="Run again the questions whose record "
                               "holds an error; without it they count as done.")

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, value: Any) -> Any:
        if value not in ("local", "ray"):
            raise ValueError(f"unknown eval backend {value!r}; use local or ray")
        return value

    @property
    def traces_path(self) -> Path:
        return self.out.with_suffix(".traces.jsonl")

    def settings(self) -> dict[str, Any]:
        """The :class:`RunSettings` part, as keywords."""
        return self.model_dump(include=set(RunSettings.model_fields))

    def for_workers(self) -> EvalConfig:
        """The config as workers in other directories (or on other machines) must read it:
        paths that exist here made absolute; names (a shipped graph, 'demo') stay names."""
        name, sep, path = self.dataset.partition(":")
        return self.model_copy(update={
            "graph": _absolute(self.graph),
            "dataset": f"{name}:{_absolute(path)}" if sep else self.dataset,
            "cache_path": _absolute(self.cache_path) if self.cache_path else None,
            "index_root": Path(_absolute(self.index_root)) if self.index_root else None,
        })


def _absolute(path: str | Path) -> str:
    return str(Path(path).resolve()) if Path(path).exists() else str(path)

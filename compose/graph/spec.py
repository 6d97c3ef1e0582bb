"""The graph spec: the pydantic form of a YAML graph file.

A spec is data only. ``compose.graph.validate`` checks it against the module registry and the
graph structure; ``compose.graph.compiler`` turns a valid spec into a LangGraph ``StateGraph``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from compose.config import CacheConfig, GeneratorConfig, RetrieverConfig, StrictModel

END = "END"


class NodeSpec(StrictModel):
    """A node runs one registered module. ``inputs`` maps module input fields to state
    fields and ``outputs`` module output fields to state fields; unmapped fields use the
    same name on both sides."""

    module: str
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    description: str = ""


class Condition(StrictModel):
    """A test on one state field. Exactly one operator is given."""

    field: str
    equals: Any = None
    not_equals: Any = None
    is_in: list[Any] | None = None
    truthy: bool | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        given = [name for name in ("equals", "not_equals", "is_in", "truthy")
                 if name in self.model_fields_set]
        if len(given) != 1:
            raise ValueError("a condition needs exactly one of equals, not_equals, is_in, truthy")
        return self

    def holds(self, state: dict[str, Any]) -> bool:
        value = state.get(self.field)
        if "equals" in self.model_fields_set:
            return bool(value == self.equals)
        if "not_equals" in self.model_fields_set:
            return bool(value != self.not_equals)
        if self.is_in is not None:
            return value in self.is_in
        return bool(value) == self.truthy


class Branch(StrictModel):
    """One way out of a node. Branches are tried in order; the first whose condition holds
    and whose budget is not spent is taken. ``budget`` bounds how often a branch may be
    taken in one run - every loop must pass through a budgeted branch."""

    to: str
    when: Condition | None = None
    budget: int | None = Field(default=None, ge=0)
    budget_per: str | None = Field(
        default=None,
        description="A state field; the budget is counted separately for each of its values "
        "(for example a per-hop retry budget with budget_per: hop_index).",
    )


class EdgeSpec(StrictModel):
    source: str = Field(alias="from")
    to: str | None = None
    branches: list[Branch] | None = None

    model_config = {"populate_by_name": True, "extra": "forbid"}

    @model_validator(mode="after")
    def _to_or_branches(self) -> EdgeSpec:
        if (self.to is None) == (self.branches is None):
            raise ValueError("an edge needs either 'to' or 'branches'")
        if self.branches is not None and not self.branches:
            raise ValueError("'branches' must not be empty")
        return self

    def targets(self) -> list[str]:
        return [self.to] if self.to is not None else [b.to for b in self.branches or []]


class StateFieldSpec(StrictModel):
    """Declares how concurrent writes to a field combine (needed for parallel branches)."""

    reducer: Literal["replace", "append", "merge"] = "replace"
    description: str = ""


class GraphSpec(StrictModel):
    name: str
    description: str = ""
    version: int = 1
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    retriever: RetrieverConfig = Field(default_factory=RetrieverConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    inputs: list[str] = Field(default_factory=lambda: ["question"])
    outputs: list[str] = Field(default_factory=list)
    state: dict[str, StateFieldSpec] = Field(default_factory=dict)
    tools: list[str] = Field(
        default_factory=list,
        description="The graph's tool allow-list: registered tool names its agent nodes may "
        "call. Each tool-using node narrows it with its own params.tools.",
    )
    entry: str
    nodes: dict[str, NodeSpec]
    edges: list[EdgeSpec] = Field(default_factory=list)

    def to_yaml(self) -> str:
        import yaml  # on use: `composerag schema` reads this file and needs no YAML library

        data = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        data.setdefault("entry", self.entry)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def edges_from(self, node: str) -> list[EdgeSpec]:
        return [edge for edge in self.edges if edge.source == node]

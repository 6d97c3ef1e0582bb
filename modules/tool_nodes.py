"""What every tool-using node shares (``agent_step``, ``execute_tool``): the ``tools`` param,
its checks against the graph's ``tools:`` allow-list, and whether its tools need an index.

The allow-list is written once at the top of a graph so that it is readable in one place;
each tool-using node narrows it with its own ``params.tools``. These checks live here, with
the modules that call tools, rather than in the graph validator, which knows no tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from compose.module import GraphFacts, NodeIssue
from compose.tools.registry import check_tool_names, get_tool

_NAMES = TypeAdapter(list[str])


class ToolParams(BaseModel):
    """The params every tool-using module has: the tools its node may call."""

    model_config = ConfigDict(extra="forbid")
    tools: list[str] = Field(min_length=1, description="The tools this node may call; each "
                             "must also be in the graph's tools: allow-list.")

    @field_validator("tools")
    @classmethod
    def _registered(cls, names: list[str]) -> list[str]:
        return check_tool_names(names)


class UsesTools:
    """Mixin of a module whose ``Params`` derive from :class:`ToolParams`: put it before the
    module base class (``class AgentStep(UsesTools, LLMModule)``)."""

    uses_tools: ClassVar[bool] = True

    @classmethod
    def needs_index(cls, params: BaseModel) -> bool:
        """A node allowed a tool that searches the graph's index (``evidence_search``)
        cannot run without one."""
        return isinstance(params, ToolParams) and any(get_tool(name).retrieves
                                                      for name in params.tools)

    @classmethod
    def check_node(cls, node: str, params: Mapping[str, Any],
                   graph: GraphFacts) -> list[NodeIssue]:
        """Every name in the graph's allow-list is registered, and the node allows only
        tools from it. ``params`` are raw: a ``tools`` that is not a list of names has
        failed the params check already, which says why."""
        if graph.tools is None:
            return []
        issues = []
        for k, name in enumerate(graph.tools):
            try:
                get_tool(name)
            except KeyError as exc:
                issues.append(NodeIssue(("tools", k), str(exc.args[0])))
        try:
            named = _NAMES.validate_python(params.get("tools", []))
        except ValidationError:
            named = []
        for k, name in enumerate(named):
            if name not in graph.tools:
                issues.append(NodeIssue(
                    ("nodes", node, "params", "tools", k),
                    f"tool {name!r} is not in the graph's tools: allow-list "
                    f"({', '.join(graph.tools) or 'empty'})"))
        return issues

"""A validated graph with its modules resolved: what validation hands to the compiler.

Validation looks every node's module up in the registry and validates its params; a
:class:`ResolvedGraph` keeps those results, so the compiler, the typed request/response models
and the servers read them instead of looking each module up (and validating its params)
again. Only a spec that passed every check is resolved (``compose.graph.validate``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from compose.graph.spec import GraphSpec, NodeSpec
from compose.module import LLMModule, Module


def written_fields(node: NodeSpec, module: type[Module]) -> set[str]:
    """The state fields a node writes: its module's output fields, through ``outputs``."""
    return {node.outputs.get(field, field) for field in module.Output.model_fields}


@dataclass(frozen=True)
class ResolvedNode:
    """One node: its spec, its module class and its validated params."""

    name: str
    spec: NodeSpec
    module: type[Module]
    params: BaseModel

    @property
    def needs_index(self) -> bool:
        return self.module.needs_index(self.params)

    @property
    def prompts_model(self) -> bool:
        return issubclass(self.module, LLMModule)

    def build(self) -> Module:
        """The module instance that runs this node, on the params validated once."""
        return self.module(self.params)

    def written_fields(self) -> set[str]:
        return written_fields(self.spec, self.module)


@dataclass(frozen=True)
class ResolvedGraph:
    spec: GraphSpec
    nodes: dict[str, ResolvedNode]

    @property
    def name(self) -> str:
        return self.spec.name

    def index_nodes(self) -> list[str]:
        """The nodes that search the graph's index (a ``retrieve`` node, or an agent allowed
        a tool that searches it): the graph cannot run without an index."""
        return [name for name, node in self.nodes.items() if node.needs_index]

    @property
    def needs_index(self) -> bool:
        return bool(self.index_nodes())

    @property
    def prompts_model(self) -> bool:
        """Whether some node is answered by the generator (so running needs the model)."""
        return any(node.prompts_model for node in self.nodes.values())

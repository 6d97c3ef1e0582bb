"""Typed request and response models of a graph, derived from the modules that read its
inputs and write its outputs.

A graph spec names its inputs and outputs as state fields; their types are those of the
module fields mapped onto them. Servers (HTTP, MCP) and the LangChain tool publish these
models as their schemas, so a client sees ``question: str`` rather than an untyped dict, and
a bad request is refused before any model is loaded.

Usage::

    Request, Response = graph_io_models(load_resolved("naive_rag"))
    Request.model_json_schema()
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from compose.graph.resolved import ResolvedGraph
from compose.graph.spec import GraphSpec


def _model_name(spec: GraphSpec, suffix: str) -> str:
    return "".join(part.title() for part in spec.name.split("_")) + suffix


def _field_sources(graph: ResolvedGraph, side: str) -> dict[str, FieldInfo]:
    """For each state field, the first module field mapped onto it (reading or writing)."""
    found: dict[str, FieldInfo] = {}
    for node in graph.nodes.values():
        model, mapping = ((node.module.Input, node.spec.inputs) if side == "input"
                          else (node.module.Output, node.spec.outputs))
        for name, info in model.model_fields.items():
            found.setdefault(mapping.get(name, name), info)
    return found


def graph_io_models(graph: ResolvedGraph) -> tuple[type[BaseModel], type[BaseModel]]:
    """(Request, Response) pydantic models for the graph's inputs and outputs."""
    spec = graph.spec
    readers = _field_sources(graph, "input")
    writers = _field_sources(graph, "output")
    request_fields: dict[str, Any] = {}
    for name in spec.inputs:
        info = readers.get(name)
        annotation = info.annotation if info is not None else str
        constraints = info.metadata if info is not None else []
        limits: dict[str, Any] = _length_limits(constraints)
        request_fields[name] = (annotation, Field(
            ..., description=(info.description if info is not None else None) or name,
            **limits))
    response_fields: dict[str, Any] = {}
    for name in spec.outputs:
        info = writers.get(name)
        output_type: Any = info.annotation if info is not None else Any
        response_fields[name] = (output_type | None, Field(
            default=None, description=(info.description if info is not None else None)))
    request = create_model(_model_name(spec, "Request"),
                           __config__=ConfigDict(extra="forbid"), **request_fields)
    response = create_model(_model_name(spec, "Response"), **response_fields)
    request.__doc__ = f"Inputs of the {spec.name!r} graph."
    response.__doc__ = f"Outputs of the {spec.name!r} graph."
    return request, response


def _length_limits(metadata: list[Any]) -> dict[str, int]:
    """Carry min/max length constraints of the module field over to the request field."""
    limits: dict[str, int] = {}
    for item in metadata:
        for key in ("min_length", "max_length"):
            value = getattr(item, key, None)
            if value is not None:
                limits[key] = value
    return limits

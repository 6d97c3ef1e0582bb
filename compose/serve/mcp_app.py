"""MCP server: each graph is one MCP tool whose input schema is the graph's request model.

A tool call validates its arguments against that model (a bad call is answered with an
``is_error`` result naming the problem, never a crash), runs the graph under the service
deadline, and returns the outputs both as structured content and as JSON text for clients
that only read text. Transports: stdio (for desktop agents that spawn the server) and
streamable HTTP on loopback.

Usage::

    server = create_mcp_server([load_graph("naive_rag", index=demo_index())])
    anyio.run(run_stdio, server)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server
from pydantic import ValidationError

from compose.api import ComposeGraph
from compose.graph.compiler import NodeError
from compose.serve.service import GraphService, InputTooLongError, RunTimeoutError


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)],
                                is_error=True)


def create_mcp_server(graphs: Iterable[ComposeGraph], *, timeout_s: float = 300.0) -> Server:
    services = {g.spec.name: GraphService(g, timeout_s=timeout_s) for g in graphs}
    if not services:
        raise ValueError("create_mcp_server needs at least one graph")

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=name, description=service.description,
                       input_schema=service.Request.model_json_schema(),
                       output_schema=service.Response.model_json_schema())
            for name, service in services.items()])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        service = services.get(params.name)
        if service is None:
            return _error(f"unknown tool {params.name!r}; tools: {', '.join(services)}")
        try:
            request = service.Request.model_validate(params.arguments or {})
        except ValidationError as exc:
            return _error(f"invalid arguments for {params.name}: {exc}")
        try:
            result = await service.invoke(request)
        except (InputTooLongError, RunTimeoutError, NodeError) as exc:
            return _error(str(exc))
        return types.CallToolResult(
            content=[types.TextContent(type="text",
                                       text=json.dumps(result.output.model_dump(mode="json"),
                                                       ensure_ascii=False))],
            structured_content=result.output.model_dump(mode="json"))

    return Server("composerag", version="1",
                  instructions="Each tool runs one composerag graph; see its input schema.",
                  on_list_tools=list_tools, on_call_tool=call_tool)


async def run_stdio(server: Server) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())

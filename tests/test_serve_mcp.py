"""The MCP server through a real MCP client: streamable HTTP on loopback, and stdio with the
CLI-launched server running the real embedded model."""

from __future__ import annotations

import json
import sys

import anyio
from mcp import Client, StdioServerParameters

from compose.api import load_graph
from compose.serve.mcp_app import create_mcp_server
from tests.conftest import answering, scripted_runtime
from tests.loopback import serving


def test_streamable_http_lists_typed_tools_and_calls_them(demo_index):
    rag = load_graph("naive_rag", runtime=scripted_runtime(answering("Caskel"), demo_index))
    closed = load_graph("closed_book", runtime=scripted_runtime(answering("late", 2.0)))
    server = create_mcp_server([rag, closed], timeout_s=0.5)

    async def session(url: str):
        async with Client(f"{url}/mcp") as client:
            tools = (await client.list_tools()).tools
            good = await client.call_tool("naive_rag", {"question": "Who made the lamp?"})
            missing = await client.call_tool("naive_rag", {})
            extra = await client.call_tool("naive_rag", {"question": "q", "k": 50})
            unknown = await client.call_tool("rm_rf", {"path": "/"})
            late = await client.call_tool("closed_book", {"question": "q"})
        return tools, good, missing, extra, unknown, late

    with serving(server.streamable_http_app(host="127.0.0.1")) as url:
        tools, good, missing, extra, unknown, late = anyio.run(session, url)

    by_name = {tool.name: tool for tool in tools}
    assert set(by_name) == {"naive_rag", "closed_book"}
    assert by_name["naive_rag"].input_schema["required"] == ["question"]
    assert by_name["naive_rag"].input_schema["additionalProperties"] is False
    assert not good.is_error
    assert good.structured_content["answer"] == "Caskel"
    assert json.loads(good.content[0].text)["citations"] == \
        [good.structured_content["passages"][0]["id"]]
    assert missing.is_error and "question" in missing.content[0].text
    assert extra.is_error and "k" in extra.content[0].text
    assert unknown.is_error and "unknown tool 'rm_rf'" in unknown.content[0].text
    assert late.is_error and "did not finish within 0.5 s" in late.content[0].text


def test_stdio_server_from_the_cli_answers_with_the_real_model(demo_index):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "compose.cli", "serve", "--mcp", "naive_rag", "--index", str(demo_index)])

    async def session():
        async with Client(params) as client:
            tools = (await client.list_tools()).tools
            result = await client.call_tool(
                "naive_rag", {"question": "Who invented the kelp-oil lamp?"})
        return tools, result

    tools, result = anyio.run(session)
    assert [tool.name for tool in tools] == ["naive_rag"]
    assert not result.is_error, result.content
    output = result.structured_content
    assert output["answer"].strip()
    assert {p["id"] for p in output["passages"]} >= set(output["citations"])
    assert "demo-029" in {p["id"] for p in output["passages"]}  # the kelp-oil lamp passage

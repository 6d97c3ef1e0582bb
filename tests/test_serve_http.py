"""The HTTP server over real sockets: typed endpoints, streaming, limits, deadlines."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from compose.api import load_graph
from compose.serve.http_app import create_app
from tests.conftest import answering, scripted_runtime
from tests.loopback import serving


@pytest.fixture()
def app_url(demo_index):
    rag = load_graph("naive_rag", runtime=scripted_runtime(answering("Caskel"), demo_index))
    closed = load_graph("closed_book", runtime=scripted_runtime(answering("slowly", 2.0)))
    with serving(create_app([rag, closed], timeout_s=0.5, max_body_bytes=2048)) as url:
        yield url


def test_invoke_returns_typed_outputs(app_url):
    reply = httpx.post(f"{app_url}/graphs/naive_rag/invoke?trace=true",
                       json={"question": "Who invented the kelp-oil lamp?"}, timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["graph"] == "naive_rag"
    assert body["output"]["answer"] == "Caskel"
    passages = body["output"]["passages"]
    assert len(passages) == 5 and body["output"]["citations"] == [passages[0]["id"]]
    assert [event["node"] for event in body["trace"]] == ["retrieve", "answer"]


def test_bad_body_is_422_and_unknown_field_refused(app_url):
    assert httpx.post(f"{app_url}/graphs/naive_rag/invoke", json={}).status_code == 422
    reply = httpx.post(f"{app_url}/graphs/naive_rag/invoke",
                       json={"question": "q", "k": 100})
    assert reply.status_code == 422
    assert "k" in reply.text


def test_body_over_limit_is_413_with_or_without_content_length(app_url):
    big = json.dumps({"question": "x" * 5000})
    reply = httpx.post(f"{app_url}/graphs/naive_rag/invoke", content=big,
                       headers={"content-type": "application/json"})
    assert reply.status_code == 413

    def chunks():
        for start in range(0, len(big), 500):
            yield big[start:start + 500].encode()

    reply = httpx.post(f"{app_url}/graphs/naive_rag/invoke", content=chunks(),
                       headers={"content-type": "application/json"})
    assert reply.status_code == 413


def test_deadline_gives_504(app_url):
    started = time.monotonic()
    reply = httpx.post(f"{app_url}/graphs/closed_book/invoke", json={"question": "q"},
                       timeout=30)
    assert reply.status_code == 504
    assert "0.5 s" in reply.json()["detail"]
    assert time.monotonic() - started < 1.9  # answered at the deadline, not after the run


def test_stream_yields_node_events_then_end(app_url):
    with httpx.stream("POST", f"{app_url}/graphs/naive_rag/stream",
                      json={"question": "Who invented the kelp-oil lamp?"}, timeout=30) as reply:
        assert reply.headers["content-type"].startswith("application/x-ndjson")
        events = [json.loads(line) for line in reply.iter_lines() if line]
    assert [e["event"] for e in events] == ["node", "node", "end"]
    assert [e["node"] for e in events[:2]] == ["retrieve", "answer"]
    assert len(events[0]["update"]["passages"]) == 5
    assert events[2]["output"]["answer"] == "Caskel"


def test_stream_with_tokens_carries_the_answer_between_its_node_events(app_url):
    with httpx.stream("POST", f"{app_url}/graphs/naive_rag/stream?tokens=true",
                      json={"question": "Who invented the kelp-oil lamp?"}, timeout=30) as reply:
        events = [json.loads(line) for line in reply.iter_lines() if line]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "node" and events[0]["node"] == "retrieve"
    assert kinds[-2:] == ["node", "end"] and events[-2]["node"] == "answer"
    tokens = events[1:-2]
    assert tokens and all(e["event"] == "token" and e["node"] == "answer" for e in tokens)
    assert "".join(e["text"] for e in tokens) == events[-1]["output"]["answer"] == "Caskel"


def test_stream_reports_timeout_as_error_event(app_url):
    with httpx.stream("POST", f"{app_url}/graphs/closed_book/stream",
                      json={"question": "q"}, timeout=30) as reply:
        events = [json.loads(line) for line in reply.iter_lines() if line]
    assert events == [{"event": "error", "error": "timeout",
                       "detail": "graph 'closed_book' did not finish within 0.5 s"}]


def test_openapi_and_listing_carry_each_graphs_schema(app_url):
    spec = httpx.get(f"{app_url}/openapi.json").json()
    assert {"/graphs/naive_rag/invoke", "/graphs/naive_rag/stream",
            "/graphs/closed_book/invoke"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert schemas["NaiveRagRequest"]["required"] == ["question"]
    assert "passages" in schemas["NaiveRagResponse"]["properties"]
    listing = httpx.get(f"{app_url}/graphs").json()
    assert [g["name"] for g in listing] == ["naive_rag", "closed_book"]


def test_node_failure_is_500_naming_the_node(demo_index):
    broken = load_graph("closed_book", runtime=scripted_runtime(lambda m: "not json at all"))
    with serving(create_app([broken])) as url:
        reply = httpx.post(f"{url}/graphs/closed_book/invoke", json={"question": "q"},
                           timeout=30)
    assert reply.status_code == 500
    assert "answer" in reply.json()["detail"]


def test_concurrent_clients_each_get_their_own_complete_answer(demo_index):
    def echo(messages):
        time.sleep(0.01)
        question = messages[-1].content.split("Question: ")[-1].split("\n")[0]
        return {"answer": question.split()[-1].rstrip("?"), "citations": [1]}

    rag = load_graph("naive_rag", runtime=scripted_runtime(echo, demo_index))
    questions = [f"Which lamp is number{n}?" for n in range(24)]

    async def ask_all(url: str):
        async with httpx.AsyncClient(timeout=60) as client:
            async def ask(question: str, streamed: bool):
                if not streamed:
                    reply = await client.post(f"{url}/graphs/naive_rag/invoke",
                                              json={"question": question})
                    return question, reply.json()["output"]
                async with client.stream("POST", f"{url}/graphs/naive_rag/stream",
                                         json={"question": question}) as reply:
                    events = [json.loads(line) async for line in reply.aiter_lines() if line]
                return question, events[-1]["output"]
            return await asyncio.gather(*(ask(q, n % 2 == 1) for n, q in enumerate(questions)))

    with serving(create_app([rag])) as url:
        answers = asyncio.run(ask_all(url))
    assert len(answers) == 24
    for question, output in answers:
        assert output["answer"] == question.split()[-1].rstrip("?")
        assert output["citations"] == [output["passages"][0]["id"]]


def test_a_prompt_that_overflows_once_passages_are_added_is_422_not_500(demo_index):
    # 256 tokens (the least allowed) hold the question, not the question with its passages.
    small = load_graph("naive_rag", index=demo_index, overrides=["generator.n_ctx=256"])
    with serving(create_app([small], timeout_s=120)) as url:
        reply = httpx.post(f"{url}/graphs/naive_rag/invoke",
                           json={"question": "Who invented the kelp-oil lamp?"}, timeout=120)
        chat = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
            "model": "naive_rag",
            "messages": [{"role": "user", "content": "Who invented the kelp-oil lamp?"}]})
    assert chat.status_code == 400, chat.text
    assert chat.json()["error"]["code"] == "context_length_exceeded"
    assert reply.status_code == 422, reply.text
    detail = reply.json()["detail"][0]
    assert detail["type"] == "too_long_for_context"
    limit = small.runtime.generator.context_size()
    assert detail["ctx"]["context_tokens"] == limit and detail["ctx"]["tokens"] > limit
    assert "node 'answer'" in detail["msg"] and "passages" in detail["msg"]

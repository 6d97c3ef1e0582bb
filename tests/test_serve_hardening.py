"""The HTTP server's defences, over real sockets on loopback: Host/Origin checks against DNS
rebinding, a deadline on receiving requests (slowloris), strict JSON bodies that never end in
a 500, and text too long for the model's context refused before the graph runs."""

from __future__ import annotations

import asyncio
import json
import time

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from compose.api import load_graph
from compose.config import RetrieverConfig, RuntimeConfig
from compose.runtime import Runtime
from compose.serve.http_app import create_app
from compose.serve.mcp_app import create_mcp_server
from compose.serve.slow_clients import server_config
from compose.testing import ScriptedGenerator
from tests.conftest import answering, scripted_runtime
from tests.loopback import serving

QUESTION = {"question": "Who invented the kelp-oil lamp?"}


def serving_guarded(app, request_timeout_s: float):
    """Like ``tests.loopback.serving``, with the request deadline the CLI's server uses."""
    return serving(app, server_config, request_timeout_s=request_timeout_s)


@pytest.fixture(scope="module")
def rag_url(demo_index):
    rag = load_graph("naive_rag", runtime=scripted_runtime(answering("Caskel"), demo_index))
    with serving(create_app([rag])) as url:
        yield url


# -- Host and Origin -------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                                  "localhost.evil.example:80", "evil.example@127.0.0.1",
                                  "127.0.0.1/x", "[::1"])
def test_a_foreign_host_header_is_refused(rag_url, host):
    reply = httpx.post(f"{rag_url}/graphs/naive_rag/invoke", json=QUESTION,
                       headers={"host": host})
    assert reply.status_code == 421, reply.text
    detail = reply.json()["detail"]
    assert repr(host) in detail and "127.0.0.1, ::1, localhost" in detail
    assert "--allowed-host" in detail


def test_loopback_names_are_answered_on_any_port(rag_url):
    port = rag_url.rsplit(":", 1)[1]
    for host in [f"127.0.0.1:{port}", f"localhost:{port}", "LocalHost", f"[::1]:{port}",
                 "127.0.0.1"]:
        reply = httpx.get(f"{rag_url}/healthz", headers={"host": host})
        assert reply.status_code == 200, (host, reply.text)


@pytest.mark.parametrize("origin", ["http://evil.example", "https://127.0.0.1.evil.example",
                                    "http://localhost.evil.example:8000", "null",
                                    "file://", "ftp://127.0.0.1"])
def test_a_page_from_another_origin_is_refused_before_the_graph_runs(demo_index, origin):
    runtime = scripted_runtime(answering("Caskel"), demo_index)
    with serving(create_app([load_graph("naive_rag", runtime=runtime)])) as url:
        reply = httpx.post(f"{url}/graphs/naive_rag/invoke", json=QUESTION,
                           headers={"origin": origin})
    assert reply.status_code == 403, reply.text
    assert repr(origin) in reply.json()["detail"]
    assert runtime.generator.calls == []


def test_pages_served_from_loopback_may_call(rag_url):
    for origin in ["http://127.0.0.1:3000", "http://localhost", "https://[::1]:8443"]:
        reply = httpx.post(f"{rag_url}/graphs/naive_rag/invoke", json=QUESTION,
                           headers={"origin": origin})
        assert reply.status_code == 200, (origin, reply.text)


def test_allowed_hosts_names_the_server_or_turns_the_check_off(demo_index):
    rag = load_graph("naive_rag", runtime=scripted_runtime(answering("Caskel"), demo_index))
    with serving(create_app([rag], allowed_hosts=["lab.example", "127.0.0.1"])) as url:
        ok = httpx.get(f"{url}/healthz", headers={"host": "LAB.example:8000",
                                                  "origin": "https://lab.example"})
        refused = httpx.get(f"{url}/healthz", headers={"host": "localhost"})
    assert ok.status_code == 200 and refused.status_code == 421
    with serving(create_app([rag], allowed_hosts=["*"])) as url:
        assert httpx.get(f"{url}/healthz", headers={"host": "anything.example",
                                                    "origin": "http://x"}).status_code == 200
    with pytest.raises(ValueError, match="allowed_hosts is empty"):
        create_app([rag], allowed_hosts=[])


# -- slow clients ----------------------------------------------------------------------------

async def _trickle(port: int, head: bytes, tail: bytes, pause_s: float) -> tuple[float, bytes]:
    """Send ``head`` at once, then ``tail`` a byte at a time; return when the server closes
    the connection: (seconds since connecting, what it answered)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""

    async def read() -> None:
        nonlocal answer
        while chunk := await reader.read(4096):
            answer += chunk

    reading = asyncio.create_task(read())
    try:
        writer.write(head)
        for byte in tail:
            if reading.done():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(pause_s)
    except ConnectionError:
        pass  # cut while sending: what the test expects
    await asyncio.wait_for(reading, 30)
    closed_after = time.monotonic() - started
    writer.close()
    return closed_after, answer


def test_forty_slow_clients_are_cut_at_the_request_deadline(demo_index):
    runtime = scripted_runtime(answering("Caskel"), demo_index)
    app = create_app([load_graph("naive_rag", runtime=runtime)])
    body = json.dumps(QUESTION).encode()
    start = b"POST /graphs/naive_rag/invoke HTTP/1.1\r\nhost: 127.0.0.1\r\n"
    slow_headers = (start, b"content-type: application/json\r\n" * 20)
    slow_body = (start + b"content-type: application/json\r\ncontent-length: %d\r\n\r\n"
                 % len(body), body)
    idle = (b"", b"")

    async def attack(port: int):
        clients = [slow_headers] * 18 + [slow_body] * 18 + [idle] * 4
        return await asyncio.gather(*(_trickle(port, head, tail, 0.05)
                                      for head, tail in clients))

    with serving_guarded(app, request_timeout_s=1.0) as url:
        results = asyncio.run(attack(int(url.rsplit(":", 1)[1])))
        assert httpx.get(f"{url}/healthz").status_code == 200  # still serving
    times = [seconds for seconds, _ in results]
    assert len(times) == 40
    assert min(times) >= 0.9 and max(times) < 2.5, times  # at the deadline, not before
    assert all(answer.startswith(b"HTTP/1.1 408 ") for _, answer in results)
    assert b"request not received within 1 s" in results[0][1]
    assert runtime.generator.calls == []


def test_the_deadline_stops_once_the_request_is_in(demo_index):
    slow = load_graph("closed_book", runtime=scripted_runtime(answering("late", 0.8)))
    with (serving_guarded(create_app([slow]), request_timeout_s=0.5) as url,
          httpx.Client(timeout=30) as client):  # one kept-alive connection
        first = client.post(f"{url}/graphs/closed_book/invoke", json=QUESTION)
        time.sleep(0.8)  # idle past the request deadline: keep-alive's to judge
        second = client.post(f"{url}/graphs/closed_book/invoke", json=QUESTION)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert second.json()["output"]["answer"] == "late"


def test_each_request_on_a_connection_has_the_deadline_and_one_answer(demo_index):
    app = create_app([load_graph("naive_rag", runtime=scripted_runtime(answering("Caskel"),
                                                                          demo_index))],
                     max_body_bytes=2048)
    body = json.dumps(QUESTION).encode()
    whole = (b"POST /graphs/naive_rag/invoke HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: "
             b"application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
    too_big = (b"POST /graphs/naive_rag/invoke HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: "
               b"application/json\r\ncontent-length: 100000\r\n\r\n")
    with serving_guarded(app, request_timeout_s=1.0) as url:
        port = int(url.rsplit(":", 1)[1])
        # A full request, then a second one on the same connection, sent slowly.
        _, kept_alive = asyncio.run(_trickle(port, whole, b"POST / HTTP/1.1\r\n" * 40, 0.05))
        # Refused at once for its declared length, then the body trickles in.
        seconds, refused = asyncio.run(_trickle(port, too_big, b"x" * 100, 0.05))
    assert kept_alive.startswith(b"HTTP/1.1 200 ") and kept_alive.count(b"HTTP/1.1 ") == 2
    assert b"HTTP/1.1 408 " in kept_alive
    assert refused.startswith(b"HTTP/1.1 413 ") and refused.count(b"HTTP/1.1 ") == 1
    assert seconds < 2.5


# -- bad bodies ------------------------------------------------------------------------------

HOSTILE_BODIES = {
    "NaN literal": (b'{"question": NaN}', "application/json"),
    "Infinity literal": (b'{"question": "q", "k": Infinity}', "application/json"),
    "number overflowing to inf": (b'{"question": 1e400}', "application/json"),
    "lone high surrogate": (b'{"question": "\\ud800"}', "application/json"),
    "lone low surrogate": (b'{"question": "\\udc00 who?"}', "application/json"),
    "invalid UTF-8": (b'{"question": "\xff"}', "application/json"),
    "bytes labelled text": (b"\xff\xfe", "text/plain"),
    "no content type": (b"\xff", None),
    "form body": (b"question=q", "application/x-www-form-urlencoded"),
    "deep nesting": (b"[" * 3000 + b"]" * 3000, "application/json"),
    "huge integer": (b'{"question": ' + b"9" * 5000 + b"}", "application/json"),
    "wrong type": (b'{"question": 5}', "application/json"),
    "not an object": (b"[1, 2]", "application/json"),
    "trailing garbage": (b'{"question": "q"} x', "application/json"),
}


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
@pytest.mark.parametrize("route", ["invoke", "stream"])
def test_a_hostile_body_is_a_4xx_in_the_error_shape(rag_url, name, route):
    body, content_type = HOSTILE_BODIES[name]
    headers = {"content-type": content_type} if content_type else {}
    reply = httpx.post(f"{rag_url}/graphs/naive_rag/{route}", content=body, headers=headers)
    assert reply.status_code in (415, 422), reply.text
    assert reply.json()["detail"]


def test_strict_json_names_what_is_wrong(rag_url):
    def detail(body: bytes) -> dict:
        reply = httpx.post(f"{rag_url}/graphs/naive_rag/invoke", content=body,
                           headers={"content-type": "application/json"})
        assert reply.status_code == 422
        return reply.json()["detail"][0]

    overflow = detail(b'{"question": "q", "k": [1, -1e999]}')
    assert overflow["type"] == "finite_number" and overflow["loc"] == ["body", "k", 1]
    surrogate = detail(b'{"question": "\\udc00"}')
    assert surrogate["type"] == "json_invalid"
    assert "surrogate" in surrogate["ctx"]["error"] and "column" in surrogate["ctx"]["error"]
    unlabelled = httpx.post(f"{rag_url}/graphs/naive_rag/invoke", content=b'{"question": "q"}')
    assert unlabelled.status_code == 415 and "content-type" in unlabelled.json()["detail"]


_surrogates = st.integers(0xD800, 0xDFFF).map(chr)
_texts = st.text(st.one_of(st.characters(), _surrogates), max_size=30)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                     st.floats(allow_nan=True, allow_infinity=True), _texts)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_texts, inner, max_size=4)), max_leaves=10)
_requests = st.one_of(
    _values,
    st.fixed_dictionaries({"question": _values}),
    st.fixed_dictionaries({"question": _texts}, optional={"k": _values, "extra": _values}))


def _encode(value, ensure_ascii: bool) -> bytes:
    """JSON as Python writes it, NaN and lone surrogates included."""
    return json.dumps(value, allow_nan=True, ensure_ascii=ensure_ascii).encode(
        "utf-8", "surrogatepass")


def _splice(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    for at, cut, insert in edits:
        at %= len(data) + 1
        data = data[:at] + insert + data[at + cut:]
    return data


_encoded = st.builds(_encode, _requests, st.booleans())
HOSTILE = st.one_of(
    _encoded,
    st.builds(_splice, _encoded, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 3),
                                                    st.binary(max_size=3)), max_size=3)),
    st.binary(max_size=200))
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8",
                                 "application/merge-patch+json", None, "text/plain",
                                 "application/x-www-form-urlencoded", "multipart/form-data"])
ROUTES = st.sampled_from(["invoke", "invoke?trace=true", "invoke?trace=maybe", "stream"])


def post_hostile(client: httpx.Client, url: str, route: str, body: bytes,
                 content_type: str | None) -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return client.post(f"{url}/graphs/naive_rag/{route}", content=body, headers=headers)


def check_hostile(client: httpx.Client, url: str, route: str, body: bytes,
                  content_type: str | None) -> None:
    """One fuzzed request: a 4xx in the error shape, or a complete answer; never a 500."""
    headers = {"content-type": content_type} if content_type else {}
    reply = client.post(f"{url}/graphs/naive_rag/{route}", content=body, headers=headers)
    assert reply.status_code == 200 or 400 <= reply.status_code < 500, reply.text
    if reply.status_code == 200 and route == "stream":
        events = [json.loads(line) for line in reply.text.splitlines() if line]
        assert events[-1]["event"] == "end", events
    elif reply.status_code != 200:
        assert reply.json()["detail"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=HOSTILE, content_type=CONTENT_TYPES, route=ROUTES)
def test_fuzzed_bodies_never_get_a_500(fuzz_client, body, content_type, route):
    check_hostile(*fuzz_client, route, body, content_type)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=HOSTILE, content_type=CONTENT_TYPES, route=ROUTES)
def test_fuzzed_bodies_never_get_a_500_many(fuzz_client, body, content_type, route):
    check_hostile(*fuzz_client, route, body, content_type)


@pytest.fixture(scope="module")
def fuzz_client(rag_url):
    with httpx.Client(timeout=30) as client:
        yield client, rag_url


# -- text longer than the model's context ----------------------------------------------------

class SmallContext(ScriptedGenerator):
    """A scripted model that reports a context of 50 tokens (words, for this tokenizer)."""

    def context_size(self) -> int:
        return 50


def small_context_runtime(index) -> Runtime:
    return Runtime(RuntimeConfig(retriever=RetrieverConfig(index=str(index))),
                   generator=SmallContext(answering("Caskel")))


def test_a_question_over_the_context_is_refused_up_front(demo_index):
    runtime = small_context_runtime(demo_index)
    graph = load_graph("naive_rag", runtime=runtime)
    long_question = {"question": "why " * 60}
    with serving(create_app([graph])) as url:
        invoked = httpx.post(f"{url}/graphs/naive_rag/invoke", json=long_question)
        streamed = httpx.post(f"{url}/graphs/naive_rag/stream", json=long_question)
        fits = httpx.post(f"{url}/graphs/naive_rag/invoke", json={"question": "why " * 20})
    for reply in (invoked, streamed):
        assert reply.status_code == 422, reply.text
        [error] = reply.json()["detail"]
        assert error["loc"] == ["body", "question"]
        assert error["ctx"] == {"tokens": 60, "context_tokens": 50}
        assert "60 tokens; the model's context holds 50 tokens" in error["msg"]
    assert fits.status_code == 200
    assert len(runtime.generator.calls) == 1  # only the question that fits reached the model


def test_the_mcp_tool_refuses_a_question_over_the_context(demo_index):
    runtime = small_context_runtime(demo_index)
    server = create_mcp_server([load_graph("naive_rag", runtime=runtime)])

    async def call(url: str):
        async with Client(f"{url}/mcp") as client:
            return await client.call_tool("naive_rag", {"question": "why " * 60})

    with serving(server.streamable_http_app(host="127.0.0.1")) as url:
        result = anyio.run(call, url)
    assert result.is_error and "context holds 50 tokens" in result.content[0].text
    assert runtime.generator.calls == []


def test_a_60k_character_question_is_a_422_with_the_real_model(real_runtime):
    graph = load_graph("naive_rag", runtime=real_runtime)
    with serving(create_app([graph])) as url:
        reply = httpx.post(f"{url}/graphs/naive_rag/invoke",
                           json={"question": "Who invented the kelp-oil lamp? " * 1875},
                           timeout=120)
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["ctx"]["context_tokens"] == real_runtime.config.generator.n_ctx == 4096
    assert error["ctx"]["tokens"] > 4096
    assert "the model's context holds 4,096 tokens" in error["msg"]

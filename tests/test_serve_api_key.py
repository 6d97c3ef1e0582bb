"""API keys for the HTTP server over real sockets: missing, wrong and right keys on the
OpenAI routes (with the real ``openai`` client) and the graph routes, the open health check,
the constant-time comparison, and the rule refusing an unauthenticated non-loopback bind."""

from __future__ import annotations

import hmac

import httpx
import openai
import pytest
from openai import OpenAI

from compose.api import load_graph
from compose.serve.api_key import (
    API_KEY_ENV,
    APIKeyAuth,
    UnsafeBindError,
    check_bind,
    is_loopback,
)
from compose.serve.http_app import create_app
from compose.serve.mcp_app import create_mcp_server
from tests.conftest import answering, scripted_runtime
from tests.loopback import serving

KEY = "sk-test-0123456789abcdef"
QUESTION = {"question": "Who invented the kelp-oil lamp?"}
MESSAGES = [{"role": "user", "content": "Who invented the kelp-oil lamp?"}]


@pytest.fixture(scope="module")
def keyed_url(demo_index):
    rag = load_graph("naive_rag", runtime=scripted_runtime(answering("Caskel"), demo_index))
    with serving(create_app([rag], api_key=KEY, max_body_bytes=2048)) as url:
        yield url


def client_of(url: str, key: str) -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def test_the_right_key_opens_the_openai_routes(keyed_url):
    client = client_of(keyed_url, KEY)
    assert [m.id for m in client.models.list()] == ["naive_rag"]
    reply = client.chat.completions.create(model="naive_rag", messages=MESSAGES)
    assert reply.choices[0].message.content.startswith("Caskel")


def test_a_wrong_key_is_an_authentication_error(keyed_url):
    with pytest.raises(openai.AuthenticationError) as raised:
        client_of(keyed_url, KEY[:-1] + "x").chat.completions.create(
            model="naive_rag", messages=MESSAGES)
    assert raised.value.code == "invalid_api_key"
    assert raised.value.body["message"] == "invalid API key"
    assert raised.value.response.headers["www-authenticate"] == "Bearer"


def test_a_missing_key_is_refused_on_every_route_but_the_health_check(keyed_url):
    missing = httpx.get(f"{keyed_url}/v1/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["message"].startswith("missing API key")
    graph_route = httpx.post(f"{keyed_url}/graphs/naive_rag/invoke", json=QUESTION)
    assert graph_route.status_code == 401
    assert graph_route.json()["detail"].startswith("missing API key")
    assert graph_route.headers["www-authenticate"] == "Bearer"
    for path in ("/graphs", "/docs", "/openapi.json"):
        assert httpx.get(f"{keyed_url}{path}").status_code == 401, path
    assert httpx.get(f"{keyed_url}/healthz").json() == {"status": "ok"}
    not_bearer = httpx.get(f"{keyed_url}/graphs", headers={"authorization": f"Basic {KEY}"})
    assert not_bearer.status_code == 401


def test_the_key_may_come_as_x_api_key_or_any_bearer_case(keyed_url):
    reply = httpx.post(f"{keyed_url}/graphs/naive_rag/invoke", json=QUESTION,
                       headers={"x-api-key": KEY})
    assert reply.status_code == 200 and reply.json()["output"]["answer"] == "Caskel"
    reply = httpx.get(f"{keyed_url}/graphs", headers={"authorization": f"bearer {KEY}"})
    assert reply.status_code == 200
    wrong = httpx.get(f"{keyed_url}/graphs", headers={"x-api-key": "nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"


def test_an_unauthenticated_body_is_refused_before_it_is_read(keyed_url):
    big = httpx.post(f"{keyed_url}/v1/chat/completions", content=b"x" * 10_000,
                     headers={"content-type": "application/json"})
    assert big.status_code == 401  # not 413: the key is checked first


def test_keys_are_compared_in_constant_time(keyed_url, monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert httpx.get(f"{keyed_url}/graphs", headers={"x-api-key": "guess"}).status_code == 401
    assert httpx.get(f"{keyed_url}/graphs", headers={"x-api-key": KEY}).status_code == 200
    assert compared == [(b"guess", KEY.encode()), (KEY.encode(), KEY.encode())]


def test_a_key_no_request_could_present_is_refused_at_startup(demo_index):
    rag = load_graph("naive_rag", runtime=scripted_runtime(answering("Caskel"), demo_index))
    for bad in ("", " padded "):
        with pytest.raises(ValueError, match="non-empty, without surrounding whitespace"):
            create_app([rag], api_key=bad)


def test_without_a_key_only_loopback_binds_are_allowed():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LocalHost"):
        assert is_loopback(host), host
        check_bind(host, api_key=None, allow_unauthenticated=False)
    for host in ("0.0.0.0", "::", "192.168.1.10", "lab.example"):
        assert not is_loopback(host), host
        with pytest.raises(UnsafeBindError) as raised:
            check_bind(host, api_key=None, allow_unauthenticated=False)
        assert "--api-key" in str(raised.value) and API_KEY_ENV in str(raised.value)
        assert "--allow-unauthenticated-remote" in str(raised.value)
        check_bind(host, api_key=KEY, allow_unauthenticated=False)
        check_bind(host, api_key=None, allow_unauthenticated=True)


def test_the_middleware_guards_the_mcp_http_app_too(demo_index):
    """The CLI's MCP HTTP transport can be wrapped the same way: its lifespan passes through
    (the session manager needs it to answer at all)."""
    rag = load_graph("naive_rag", runtime=scripted_runtime(answering("Caskel"), demo_index))
    app = APIKeyAuth(create_mcp_server([rag]).streamable_http_app(host="127.0.0.1"), KEY)
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}}
    accept = {"accept": "application/json, text/event-stream"}
    with serving(app) as url:
        refused = httpx.post(f"{url}/mcp", json=initialize, headers=accept)
        answered = httpx.post(f"{url}/mcp", json=initialize,
                              headers={**accept, "authorization": f"Bearer {KEY}"})
    assert refused.status_code == 401 and refused.json()["detail"].startswith("missing")
    assert answered.status_code == 200, answered.text
    assert "serverInfo" in answered.text

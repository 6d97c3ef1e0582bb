"""Any OpenAI-compatible chat server (vLLM, llama.cpp server, Ollama): the scale-out backend.

Plain HTTP through httpx rather than the ``openai`` SDK: the wire format is small, and servers
differ in how they accept a JSON schema (``response_format`` setting in the config).

Several replicas of one model (``base_url`` as a list) share the load: each call goes to the
next replica in turn, and one that is down or overloaded (connection error, timeout, 5xx) is
skipped for the next, so a replica restart costs no failed questions. A 4xx answer is the
request's fault and is not retried elsewhere. ``served``/``failed`` count calls per replica.

With ``on_text`` the call is streamed (``stream: true``, server-sent events) and each content
delta is passed on as it arrives. Token counts come from the final usage chunk, asked for with
``stream_options.include_usage``; a server that ignores that option (llama-cpp-python's) is
counted as one completion token per content chunk (servers send a chunk per token) and the
prompt by this backend's own estimate. A replica that fails before its first chunk is
skipped like any other; one that fails mid-stream is an error, since text already passed on
cannot be taken back.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from compose.config import GeneratorConfig
from compose.generators.adapters import refuse_adapter
from compose.generators.base import (
    Generation,
    GenerationError,
    Message,
    generation_from_chat_response,
)


class OpenAICompatGenerator:
    def __init__(
        self,
        base_url: str | list[str],
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        response_format: str = "json_schema",
        seed: int | None = 0,
    ) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("generator.base_url lists no server")
        self.base_urls = [url.rstrip("/") for url in urls]
        self.model = model
        self.model_id = f"openai:{model}@{','.join(self.base_urls)}"
        self.response_format = response_format
        self.seed = seed
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.clients = [httpx.Client(base_url=url, headers=headers, timeout=timeout_s)
                        for url in self.base_urls]
        self.supports_json_schema = True
        self.served: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self._turn = itertools.count()
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> OpenAICompatGenerator:
        refuse_adapter(config.adapter, "an OpenAI-compatible server (load it in the server)")
        if not config.base_url:
            raise ValueError("generator.backend 'openai' needs generator.base_url")
        api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
        return cls(
            config.base_url,
            config.model,
            api_key=api_key,
            timeout_s=config.timeout_s,
            response_format=config.response_format,
            seed=config.seed,
        )

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.response_format == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}

    def count_tokens(self, text: str) -> int:
        """Servers do not expose a tokenizer uniformly; 4 characters a token is the estimate."""
        return max(1, len(text) // 4)

    def generate(
        self,
        messages: list[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        logprobs: bool = False,
        stop: list[str] | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": self.seed,
        }
        if stop:
            body["stop"] = stop
        if json_schema is not None:
            body["response_format"] = self._response_format(json_schema)
        if logprobs:
            body.update(logprobs=True, top_logprobs=1)
        started = time.perf_counter()
        if on_text is None:
            data = self._post(body, _read_json)
        else:
            prompt_estimate = sum(self.count_tokens(m.content) for m in messages)
            body.update(stream=True, stream_options={"include_usage": True})
            data = self._post(body, lambda response: _read_events(response, on_text,
                                                                  prompt_estimate))
        return generation_from_chat_response(
            data,
            latency_s=time.perf_counter() - started,
            model=self.model_id,
            constrained=json_schema is not None,
            logprobs=logprobs,
        )

    def _post(self, body: dict[str, Any],
              read: Callable[[httpx.Response], dict[str, Any]]) -> dict[str, Any]:
        """POST to the replicas in turn from the next one until one answers; ``read`` turns
        the (not yet read) response into a completion."""
        with self._lock:
            first = next(self._turn)
        problems = []
        for attempt in range(len(self.clients)):
            index = (first + attempt) % len(self.clients)
            url = self.base_urls[index]
            try:
                with self.clients[index].stream("POST", "/chat/completions",
                                                json=body) as response:
                    if response.is_error:
                        response.read()
                    response.raise_for_status()
                    data = read(response)
            except httpx.HTTPStatusError as exc:
                problem = f"{url} answered {exc.response.status_code}: {exc.response.text[:300]}"
                if exc.response.status_code < 500:
                    raise GenerationError(problem) from exc
            except (httpx.HTTPError, ValueError) as exc:
                problem = f"{url}: {exc or type(exc).__name__}"
            except _StreamBroken as exc:
                with self._lock:
                    self.failed[url] += 1
                raise GenerationError(f"{url} failed mid-stream: {exc.__cause__}") from exc
            else:
                with self._lock:
                    self.served[url] += 1
                return data
            with self._lock:
                self.failed[url] += 1
            problems.append(problem)
        raise GenerationError("; ".join(problems))


class _StreamBroken(Exception):
    """A streamed reply failed after some of its text was passed on."""


def _read_json(response: httpx.Response) -> dict[str, Any]:
    response.read()
    data: dict[str, Any] = response.json()
    return data


def _read_events(response: httpx.Response, on_text: Callable[[str], None],
                 prompt_estimate: int) -> dict[str, Any]:
    """A streamed completion (server-sent events) passed to ``on_text`` delta by delta, and
    returned in the shape of a non-streamed one."""
    pieces: list[str] = []
    logprobs: list[dict[str, Any]] = []
    usage: dict[str, Any] | None = None
    try:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments, event names
            payload = line[len("data:"):].strip()
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                logprobs.extend((choice.get("logprobs") or {}).get("content") or [])
                if piece:
                    pieces.append(piece)
                    on_text(piece)
    except (httpx.HTTPError, ValueError) as exc:
        if not pieces:
            raise
        raise _StreamBroken() from exc
    usage = usage or {"prompt_tokens": prompt_estimate, "completion_tokens": len(pieces)}
    return {"choices": [{"message": {"content": "".join(pieces)},
                         "logprobs": {"content": logprobs} if logprobs else None}],
            "usage": usage}

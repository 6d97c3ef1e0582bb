"""Any OpenAI-compatible chat server (vLLM, llama.cpp server, Ollama): the scale-out backend.

Plain HTTP through httpx rather than the ``openai`` SDK: the wire format is small, and servers
differ in how they accept a JSON schema (``response_format`` setting in the config).

Several replicas of one model (``base_url`` as a list) share the load: each call goes to the
next replica in turn, and one that is down or overloaded (connection error, timeout, 5xx) is
skipped for the next, so a replica restart costs no failed questions. A 4xx answer is the
request's fault and is not retried elsewhere. ``served``/``failed`` count calls per replica.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter

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

    def _response_format(self, schema: dict) -> dict:
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
        json_schema: dict | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        logprobs: bool = False,
        stop: list[str] | None = None,
    ) -> Generation:
        body: dict = {
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
        data = self._post(body)
        return generation_from_chat_response(
            data,
            latency_s=time.perf_counter() - started,
            model=self.model_id,
            constrained=json_schema is not None,
            logprobs=logprobs,
        )

    def _post(self, body: dict) -> dict:
        """POST to the replicas in turn from the next one until one answers."""
        with self._lock:
            first = next(self._turn)
        problems = []
        for attempt in range(len(self.clients)):
            index = (first + attempt) % len(self.clients)
            url = self.base_urls[index]
            try:
                response = self.clients[index].post("/chat/completions", json=body)
                response.raise_for_status()
                data = response.json()
            except httpx.HTTPStatusError as exc:
                problem = f"{url} answered {exc.response.status_code}: {exc.response.text[:300]}"
                if exc.response.status_code < 500:
                    raise GenerationError(problem) from exc
            except (httpx.HTTPError, ValueError) as exc:
                problem = f"{url}: {exc or type(exc).__name__}"
            else:
                with self._lock:
                    self.served[url] += 1
                return data
            with self._lock:
                self.failed[url] += 1
            problems.append(problem)
        raise GenerationError("; ".join(problems))

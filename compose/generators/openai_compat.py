"""Any OpenAI-compatible chat server (vLLM, llama.cpp server, Ollama): the scale-out backend.

Plain HTTP through httpx rather than the ``openai`` SDK: the wire format is small, and servers
differ in how they accept a JSON schema (``response_format`` setting in the config).
"""

from __future__ import annotations

import os
import time

import httpx

from compose.config import GeneratorConfig
from compose.generators.base import (
    Generation,
    GenerationError,
    Message,
    generation_from_chat_response,
)


class OpenAICompatGenerator:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        response_format: str = "json_schema",
        seed: int | None = 0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.model_id = f"openai:{model}@{self.base_url}"
        self.response_format = response_format
        self.seed = seed
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)
        self.supports_json_schema = True

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> OpenAICompatGenerator:
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
        try:
            response = self.client.post("/chat/completions", json=body)
            response.raise_for_status()
            data = response.json()
        except httpx.HTTPStatusError as exc:
            raise GenerationError(
                f"{self.base_url} answered {exc.response.status_code}: {exc.response.text[:300]}"
            ) from exc
        except httpx.HTTPError as exc:
            raise GenerationError(f"{self.base_url}: {exc}") from exc
        return generation_from_chat_response(
            data,
            latency_s=time.perf_counter() - started,
            model=self.model_id,
            constrained=json_schema is not None,
            logprobs=logprobs,
        )

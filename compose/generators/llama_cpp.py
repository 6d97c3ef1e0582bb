"""GGUF models through llama.cpp: the default backend.

The JSON schema is compiled to a llama.cpp grammar, so even a 135M-parameter model emits
parsable module outputs. One ``Llama`` object is not thread-safe, hence the lock.

llama.cpp keeps the KV state of the previous prompt and re-evaluates only from the first token
where the next prompt differs, so prompts that share a leading part (instructions + question)
are cheap after the first; ``Generation.cached_tokens`` reports how many prompt tokens were
skipped that way, and ``exclusive()`` holds the model so a run of such calls stays together.
"""

from __future__ import annotations

import os
import threading
import time
import weakref

from compose.config import GeneratorConfig
from compose.generators.base import (
    Generation,
    GenerationError,
    Message,
    generation_from_chat_response,
)
from compose.generators.models import resolve_gguf


class LlamaCppGenerator:
    supports_json_schema = True

    def __init__(self, llama, model_id: str, *, logprobs_enabled: bool) -> None:
        self.llama = llama
        self.model_id = model_id
        self.logprobs_enabled = logprobs_enabled
        self._lock = threading.RLock()
        # Free the model while the interpreter is intact: llama-cpp-python's own __del__ at
        # shutdown runs after its C bindings are torn down and prints a TypeError.
        weakref.finalize(self, llama.close)

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> LlamaCppGenerator:
        from llama_cpp import Llama

        path = resolve_gguf(config.model)
        llama = Llama(
            model_path=str(path),
            n_ctx=config.n_ctx,
            n_threads=config.n_threads or os.cpu_count(),
            seed=config.seed,
            logits_all=config.logprobs,
            verbose=False,
        )
        return cls(llama, f"gguf:{path.name}", logprobs_enabled=config.logprobs)

    def exclusive(self) -> threading.RLock:
        """The model's lock, held across several ``generate`` calls (``with gen.exclusive():``)."""
        return self._lock

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

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
        if logprobs and not self.logprobs_enabled:
            raise GenerationError(
                "token logprobs need the llama_cpp model loaded with generator.logprobs: true"
            )
        kwargs: dict = {
            "messages": [m.model_dump() for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stop": stop,
        }
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
        if logprobs:
            kwargs.update(logprobs=True, top_logprobs=1)
        started = time.perf_counter()
        with self._lock:
            kept = self.llama.input_ids[: self.llama.n_tokens].tolist()
            try:
                response = self.llama.create_chat_completion(**kwargs)
            except ValueError as exc:  # prompt longer than the context window, for one
                raise GenerationError(f"llama.cpp: {exc}") from exc
            generation = generation_from_chat_response(
                response,
                latency_s=time.perf_counter() - started,
                model=self.model_id,
                constrained=json_schema is not None,
                logprobs=logprobs,
            )
            prompt = self.llama.input_ids[: generation.tokens_in].tolist()
        generation.cached_tokens = reused_prefix(kept, prompt)
        return generation


def reused_prefix(kept: list[int], prompt: list[int]) -> int:
    """Prompt tokens llama.cpp takes from its KV cache: the longest common prefix with what it
    holds, less one when that covers the whole prompt (the last token is re-evaluated to get
    fresh logits), mirroring ``Llama.generate``."""
    common = 0
    for a, b in zip(kept, prompt, strict=False):
        if a != b:
            break
        common += 1
    return common - 1 if common == len(prompt) and common > 0 else common

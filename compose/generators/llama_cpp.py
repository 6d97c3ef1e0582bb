"""GGUF models through llama.cpp: the default backend.

The JSON schema is compiled to a llama.cpp grammar, so even a 135M-parameter model emits
parsable module outputs. One ``Llama`` object is not thread-safe, hence the lock.

llama.cpp keeps the KV state of the previous prompt and re-evaluates only from the first token
where the next prompt differs, so prompts that share a leading part (instructions + question)
are cheap after the first; ``Generation.cached_tokens`` reports how many prompt tokens were
skipped that way, and ``exclusive()`` holds the model so a run of such calls stays together.

Greedy calls (temperature 0, what modules use) decode in ``llama_decode``, which consults the
JSON-schema grammar only when the model's top token breaks it (twice the decode speed of
llama-cpp-python's sampler) and reads token logprobs from each step's logits; sampled calls
go through llama-cpp-python's ``create_chat_completion``. Both stream the reply to ``on_text``
as it is decoded (see ``_sampled_tokens`` for why the sampled path does not use that method's
own ``stream=True``).

Loading picks the CPU kernels (``cpu_backend``), runs a packaged model from its fast-format
copy (``fast_gguf``), and sets prefill and decode threads from one number: llama.cpp's own
default for prefill threads is every core, which oversubscribes a process given a share.
A LoRA adapter (``generator.adapter``, see ``adapters``) is checked against the model file
before loading; on a packaged model it is merged into the fast copy's weights
(``generator.merge_adapter``), otherwise applied by llama.cpp at run time. Its digest is part of
``model_id`` either way.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, cast

from compose.config import GeneratorConfig
from compose.generators.adapters import refused_by_llama, resolve_adapter
from compose.generators.base import (
    ContextOverflowError,
    Generation,
    GenerationError,
    Message,
    TextStream,
    generation_from_chat_response,
)
from compose.generators.cpu_backend import ensure_cpu_backend
from compose.generators.fast_gguf import derived_gguf, slow_type_hint
from compose.generators.llama_decode import ChatTemplate, greedy_decode
from compose.generators.llama_parallel import ParallelAnswers, ShortAnswer
from compose.generators.models import known_models, resolve_gguf

if TYPE_CHECKING:  # llama_cpp loads its shared library on import: only where it is used
    from llama_cpp import Llama


class LlamaCppGenerator:
    supports_json_schema = True

    def __init__(self, llama: Llama, model_id: str, *, logprobs_enabled: bool, n_threads: int = 1,
                 flash_attn: bool = False, parallel_sequences: int = 1) -> None:
        self.llama = llama
        self.model_id = model_id
        self.logprobs_enabled = logprobs_enabled
        self.n_threads = n_threads
        self.flash_attn = flash_attn
        self.parallel_sequences = parallel_sequences
        self._parallel: ParallelAnswers | None = None
        self._template: ChatTemplate | None = None
        self._lock = threading.RLock()
        # Free the model while the interpreter is intact: llama-cpp-python's own __del__ at
        # shutdown runs after its C bindings are torn down and prints a TypeError.
        weakref.finalize(self, llama.close)

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> LlamaCppGenerator:
        from llama_cpp import Llama

        ensure_cpu_backend()
        path = resolve_gguf(config.model)
        packaged = config.model in known_models()
        adapter = resolve_adapter(config.adapter, path, config.model)
        # fast_format none runs the shipped file itself: its adapter is applied at run time
        mergeable = packaged and config.merge_adapter and config.fast_format != "none"
        merged = adapter if mergeable else None
        if packaged:
            path = derived_gguf(path, config.fast_format, adapter=merged)
        runtime_adapter = None if merged else adapter
        threads = config.n_threads or usable_threads()
        try:
            llama = Llama(
                model_path=str(path),
                lora_path=str(runtime_adapter.path) if runtime_adapter else None,
                n_ctx=config.n_ctx,
                n_batch=config.n_batch,
                n_ubatch=min(config.n_ubatch, config.n_batch),
                n_threads=threads,
                n_threads_batch=threads,
                flash_attn=config.flash_attn,
                seed=config.seed,
                logits_all=config.logprobs,
                verbose=False,
            )
        except RuntimeError as exc:  # "Failed to set LoRA adapter" on the context
            if runtime_adapter is None or "LoRA" not in str(exc):
                raise
            raise refused_by_llama(runtime_adapter, path) from exc
        # llama-cpp-python 0.3.36 tests the adapter pointer for None, but a failed
        # llama_adapter_lora_init returns a NULL pointer object: test it here.
        if runtime_adapter is not None and not llama._lora_adapter:
            llama.close()
            raise refused_by_llama(runtime_adapter, path)
        if not packaged:
            hint = slow_type_hint(_file_type(llama), path)
            if hint:
                print(hint, file=sys.stderr)
        # a merged copy's name carries the adapter's digest already
        model_id = f"gguf:{path.name}" + (f"+lora:{runtime_adapter.digest}"
                                          if runtime_adapter else "")
        return cls(llama, model_id, logprobs_enabled=config.logprobs,
                   n_threads=threads, flash_attn=config.flash_attn,
                   parallel_sequences=config.parallel_sequences)

    def exclusive(self) -> threading.RLock:
        """The model's lock, held across several ``generate`` calls (``with gen.exclusive():``)."""
        return self._lock

    def short_answers(self, prompts: list[list[Message]], *, max_tokens: int = 48,
                      parallel: bool | None = None) -> list[ShortAnswer]:
        """Greedy ``{"answer": ...}`` strings with token logprobs for independent prompts,
        decoded as parallel sequences of one batch (see ``llama_parallel``)."""
        with self._lock:
            if self._parallel is None:
                self._parallel = ParallelAnswers(
                    self.llama, n_threads=self.n_threads, flash_attn=self.flash_attn,
                    max_sequences=self.parallel_sequences)
                weakref.finalize(self, self._parallel.close)
            if parallel is None:
                parallel = self.parallel_sequences > 1
            return self._parallel.answer(prompts, max_tokens=max_tokens, parallel=parallel)

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def context_size(self) -> int:
        """The context window in tokens (``generator.n_ctx``); a prompt must be shorter."""
        return self.llama.n_ctx()

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
        if logprobs and temperature != 0.0 and not self.logprobs_enabled:
            raise GenerationError("token logprobs when sampling (temperature > 0) need the "
                                  "llama_cpp model loaded with generator.logprobs: true")
        started = time.perf_counter()
        if temperature == 0.0:
            with self._lock:
                prompt, stops = self._chat_template().tokens(messages)
                decoded = greedy_decode(self.llama, prompt, schema=json_schema,
                                        max_tokens=max_tokens, stop=[*stops, *(stop or [])],
                                        on_text=on_text)
            return Generation(
                text=decoded.text, tokens_in=decoded.tokens_in, tokens_out=decoded.tokens_out,
                latency_s=time.perf_counter() - started, model=self.model_id,
                token_logprobs=decoded.token_logprobs if logprobs else None,
                cached_tokens=decoded.cached_tokens, constrained=json_schema is not None)
        return self._sampled(messages, json_schema, max_tokens, temperature, logprobs, stop,
                             started, on_text)

    def _chat_template(self) -> ChatTemplate:
        if self._template is None:
            self._template = ChatTemplate(self.llama)
        return self._template

    def _sampled(self, messages: list[Message], json_schema: dict[str, Any] | None,
                 max_tokens: int, temperature: float, logprobs: bool, stop: list[str] | None,
                 started: float, on_text: Callable[[str], None] | None = None) -> Generation:
        """Temperature above 0: llama-cpp-python's own sampling chain."""
        kwargs: dict[str, Any] = {
            "messages": [m.model_dump() for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stop": stop,
        }
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
        if logprobs:
            kwargs.update(logprobs=True, top_logprobs=1)
        with self._lock:
            kept = self.llama.input_ids[: self.llama.n_tokens].tolist()
            stream = None
            if on_text is not None:  # the chat template's stop strings end the reply too
                stream = TextStream(on_text, [*self._chat_template().tokens(messages)[1],
                                              *(stop or [])])
            try:
                with _sampled_tokens(self.llama, stream) if stream else nullcontext():
                    # without stream=True the reply is one response object
                    response = cast("dict[str, Any]",
                                    self.llama.create_chat_completion(**kwargs))
            except ValueError as exc:  # the prompt is longer than the context window
                raise ContextOverflowError(f"llama.cpp: {exc}",
                                           limit=self.llama.n_ctx()) from exc
            generation = generation_from_chat_response(
                response,
                latency_s=time.perf_counter() - started,
                model=self.model_id,
                constrained=json_schema is not None,
                logprobs=logprobs,
            )
            prompt = self.llama.input_ids[: generation.tokens_in].tolist()
        if stream is not None:
            stream.finish(generation.text)
        generation.cached_tokens = reused_prefix(kept, prompt)
        return generation


@contextmanager
def _sampled_tokens(llama: Llama, stream: TextStream) -> Iterator[None]:
    """Feed ``stream`` each token ``Llama.sample`` picks while the block runs.

    ``create_chat_completion(stream=True)`` decodes each streamed token on its own, so a
    character whose bytes span two tokens is lost from the streamed text, and its chunks
    carry no token counts. Watching the sampler instead keeps the ordinary response (text,
    usage, logprobs) and streams the decoded text of the tokens so far, as that response's
    text is decoded. The caller holds the model's lock, so no other call samples meanwhile.
    """
    import llama_cpp

    sample = llama.sample
    generated: list[int] = []
    prompt: list[int] = []

    def watched(*args: Any, **kwargs: Any) -> int:
        if not generated and not prompt:
            prompt.extend(llama.input_ids[: llama.n_tokens].tolist())
        token: int = sample(*args, **kwargs)
        if not llama_cpp.llama_vocab_is_eog(llama._model.vocab, token):
            generated.append(token)
            text = llama.detokenize(generated, prev_tokens=prompt)
            stream.update(text.decode("utf-8", errors="ignore"))
        return token

    llama.sample = watched  # type: ignore[method-assign]  # on this instance, for the block
    try:
        yield
    finally:
        del llama.sample


def usable_threads() -> int:
    """Cores this process may use: a Ray worker's share arrives as OMP_NUM_THREADS."""
    try:
        share = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        share = 0
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    return min(share, available) if share > 0 else available


def _file_type(llama: Llama) -> int | None:
    try:
        return int(llama.metadata.get("general.file_type", ""))
    except ValueError:
        return None


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

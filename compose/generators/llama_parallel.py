"""Many short answers from one llama.cpp model: parallel sequences in one batch.

MoI's exploratory passes are M independent prompts that differ only after a shared prefix and
each need a few tokens of answer. Run one after another, every pass decodes alone: one full
forward pass over the weights per generated token, M times over. Here the shared prefix is
evaluated once and copied to M sequences (one KV stream each, so no sequence attends over the
others' cells), the M suffixes are prefilled together and the M answers decoded together, one
batched forward pass per token. On 2 cores prefill dominates and this measured no faster than
one sequence at a time (bench/generators.py), so the generator asks for it only when
``generator.parallel_sequences`` > 1.

Only what the exploration signal needs is decoded: the reply is forced to start with
``{ "answer": "`` (the JSON the answer module would emit), decoding stops at the closing quote,
and log-probabilities come from the logits of the generated positions alone - no
``logits_all`` over the prompt, which costs a vocabulary-sized matmul per prompt token.
Decoding is greedy; ``parallel=False`` runs the same computation one sequence at a time. Both
give the same answers except at near-ties: llama.cpp's kernels round differently for
different batch shapes (a prompt evaluated in one batch and the same prompt evaluated after a
cached prefix differ just as much), so token log-probabilities agree closely, not bit for bit.

The sequences live in a llama.cpp context of their own beside the generator's (same weights,
separate KV cache), so the generator's prefix cache for ordinary calls is left intact. A LoRA
adapter belongs to a context in llama.cpp, so the generator's adapter is set on this one too.

Usage::

    parallel = ParallelAnswers(llama, n_threads=2, flash_attn=True)
    replies = parallel.answer([messages_1, messages_2], max_tokens=48)
    replies[0].answer, replies[0].token_logprobs
"""

from __future__ import annotations

import ctypes
import json
import time
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from compose.generators.base import Message
from compose.generators.llama_decode import ChatTemplate, logsumexp

if TYPE_CHECKING:  # llama_cpp loads its shared library on import: only where it is used
    from llama_cpp import Llama
    from llama_cpp._internals import LlamaBatch, LlamaContext

ANSWER_PREFIX = '{ "answer": "'  # as the model itself opens the object under the schema grammar
MAX_ANSWER_CHARS = 80  # the answer schema's max_length


class ShortAnswer(BaseModel):
    """One decoded answer string and what it cost."""

    answer: str
    complete: bool
    token_logprobs: list[float]
    tokens_in: int
    cached_tokens: int
    tokens_out: int
    latency_s: float


class ParallelAnswers:
    def __init__(self, llama: Llama, *, n_threads: int, flash_attn: bool,
                 max_sequences: int = 8) -> None:
        self.llama = llama
        self.n_threads = n_threads
        self.flash_attn = flash_attn
        self.max_sequences = max_sequences
        self.n_batch = 512
        self._context: LlamaContext | None = None
        self._batch: LlamaBatch | None = None
        self._n_ctx = 0
        self._template: ChatTemplate | None = None

    # -- prompts ------------------------------------------------------------------------

    def prompt_tokens(self, messages: list[Message]) -> list[int]:
        """The chat template applied as llama-cpp-python applies it, then the forced prefix."""
        if self._template is None:
            self._template = ChatTemplate(self.llama)
        return self._template.tokens(messages, suffix=ANSWER_PREFIX)[0]

    # -- context ------------------------------------------------------------------------

    def _ensure_context(self, n_ctx: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        if self._context is not None and n_ctx <= self._n_ctx:
            return
        if self._context is not None:
            self._context.close()  # type: ignore[no-untyped-call]  # unannotated in llama_cpp
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = self.max_sequences
        params.kv_unified = False  # one KV stream per sequence: no attention over others' cells
        params.n_threads = self.n_threads
        params.n_threads_batch = self.n_threads
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        self._context = _internals.LlamaContext(model=self.llama._model, params=params,
                                                verbose=False)
        _apply_adapter(self.llama, self._context)
        if self._batch is None:
            self._batch = _internals.LlamaBatch(n_tokens=self.n_batch, embd=0,
                                                n_seq_max=self.max_sequences, verbose=False)
        self._n_ctx = n_ctx

    def close(self) -> None:
        for part in (self._batch, self._context):
            if part is not None:
                part.close()  # type: ignore[no-untyped-call]  # unannotated in llama_cpp
        self._batch = self._context = None

    # -- decoding -----------------------------------------------------------------------

    def answer(self, prompts: list[list[Message]], *, max_tokens: int = 48,
               parallel: bool = True) -> list[ShortAnswer]:
        """Greedy short answers, in the order of ``prompts``."""
        if not prompts:
            return []
        tokens = [self.prompt_tokens(p) for p in prompts]
        shared = _common_prefix(tokens)
        width = min(len(prompts), self.max_sequences) if parallel else 1
        longest = max(len(t) for t in tokens) + max_tokens
        # Every KV stream gets n_ctx / n_seq_max cells, whichever of them a call uses.
        self._ensure_context(_round_up(longest + 16, 256) * self.max_sequences)
        import llama_cpp

        results: list[ShortAnswer | None] = [None] * len(prompts)
        assert self._context is not None  # made by _ensure_context
        memory = self._context.memory
        llama_cpp.llama_memory_clear(memory, True)
        self._feed([(t, p, 0) for p, t in enumerate(tokens[0][:shared])], want=set())
        for first in range(0, len(prompts), width):
            group = list(range(first, min(first + width, len(prompts))))
            for seq in range(len(group)):
                if seq:
                    llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)
                    llama_cpp.llama_memory_seq_cp(memory, 0, seq, -1, -1)  # the prefix
                else:
                    llama_cpp.llama_memory_seq_rm(memory, 0, shared, -1)
            group_started = time.perf_counter()
            decoded = self._decode_group([tokens[i] for i in group], shared, max_tokens)
            elapsed = time.perf_counter() - group_started
            for i, (answer, complete, logprobs) in zip(group, decoded, strict=True):
                results[i] = ShortAnswer(
                    answer=answer, complete=complete, token_logprobs=logprobs,
                    tokens_in=len(tokens[i]), cached_tokens=shared if i else 0,
                    tokens_out=len(logprobs), latency_s=elapsed / len(group))
        return [r for r in results if r is not None]

    def _decode_group(self, prompts: list[list[int]], shared: int,
                      max_tokens: int) -> list[tuple[str, bool, list[float]]]:
        """Prefill each prompt's suffix in sequence ``index``, then decode all together."""
        import llama_cpp

        entries: list[tuple[int, int, int]] = []
        last: dict[int, int] = {}
        for seq, prompt in enumerate(prompts):
            for pos in range(shared, len(prompt)):
                entries.append((prompt[pos], pos, seq))
            last[seq] = len(entries) - 1
        logits = self._feed(entries, want=set(last.values()))
        current = {seq: logits[last[seq]] for seq in last}
        position = {seq: len(p) for seq, p in enumerate(prompts)}
        texts = {seq: b"" for seq in last}
        logprobs: dict[int, list[float]] = {seq: [] for seq in last}
        done: dict[int, tuple[str, bool]] = {}
        vocab = self.llama._model.vocab
        while len(done) < len(prompts):
            step = []
            for seq, row in current.items():
                token = int(np.argmax(row))
                logprobs[seq].append(float(row[token] - logsumexp(row)))
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    done[seq] = (_read(texts[seq]), False)
                    continue
                texts[seq] += self.llama.detokenize([token])
                finished = _finished(texts[seq])
                if finished is not None:
                    done[seq] = finished
                elif len(logprobs[seq]) >= max_tokens:
                    done[seq] = ("", False)  # cut off by the budget: no answer
                else:
                    step.append((token, position[seq], seq))
                    position[seq] += 1
            if not step:
                break
            out = self._feed(step, want=set(range(len(step))))
            current = {seq: out[i] for i, (_, _, seq) in enumerate(step)}
        return [(*done[seq], logprobs[seq]) for seq in range(len(prompts))]

    def _feed(self, entries: list[tuple[int, int, int]], want: set[int]) -> dict[int, np.ndarray]:
        """Decode (token, position, sequence) entries in batches; the logits of the entries
        whose index is in ``want``."""
        assert self._context is not None and self._batch is not None  # by _ensure_context
        batch, n_vocab = self._batch.batch, self.llama.n_vocab()
        rows: dict[int, np.ndarray] = {}
        for start in range(0, len(entries), self.n_batch):
            chunk = entries[start:start + self.n_batch]
            batch.n_tokens = len(chunk)
            for i, (token, pos, seq) in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = (start + i) in want
            self._context.decode(self._batch)
            for i in range(len(chunk)):
                if (start + i) in want:
                    pointer = self._context.get_logits_ith(i)
                    array = ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float * n_vocab))
                    # numpy's stubs leave out ctypes arrays, which have the buffer protocol
                    rows[start + i] = np.frombuffer(
                        array.contents, dtype=np.float32).copy()  # type: ignore[call-overload]
        return rows


def _apply_adapter(llama: Llama, context: LlamaContext) -> None:
    """A LoRA adapter is set per context, not per model: apply the generator's here too, as
    ``Llama.__init__`` does for its own context."""
    import llama_cpp

    if llama._lora_adapter is None:
        return
    # llama_cpp types the adapter handle as c_void_p, the array's element as a pointer to it
    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(
        llama._lora_adapter)  # type: ignore[misc]
    scales = (ctypes.c_float * 1)(llama.lora_scale)
    if llama_cpp.llama_set_adapters_lora(context.ctx, adapters, 1, scales):
        raise RuntimeError(f"llama.cpp could not apply the LoRA adapter {llama.lora_path} "
                           "to the parallel-answers context")


def _finished(text: bytes) -> tuple[str, bool] | None:
    """(answer, complete) once the JSON string closed, a newline came or it is too long."""
    escaped = False
    for index, byte in enumerate(text):
        if escaped:
            escaped = False
        elif byte == 0x5C:  # backslash
            escaped = True
        elif byte == 0x22:  # closing quote
            return _read(text[:index]), True
        elif byte == 0x0A:
            return _read(text[:index]), False
    if len(text) > MAX_ANSWER_CHARS * 4 or len(_read(text)) >= MAX_ANSWER_CHARS:
        return _read(text)[:MAX_ANSWER_CHARS], False
    return None


def _read(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="ignore")
    try:
        decoded: str = json.loads(f'"{text}"')
        return decoded.strip()
    except ValueError:
        return text.strip()


def _common_prefix(prompts: list[list[int]]) -> int:
    first, shared = prompts[0], min(len(p) for p in prompts) - 1
    for other in prompts[1:]:
        common = 0
        for a, b in zip(first[:shared], other, strict=False):
            if a != b:
                break
            common += 1
        shared = min(shared, common)
    return max(shared, 0)


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step

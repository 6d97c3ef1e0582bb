"""Greedy decoding under a JSON-schema grammar that consults the grammar only when it must.

llama-cpp-python applies the grammar to the whole 49k-token vocabulary before every greedy
pick, which halves decode speed on the embedded model (bench/generators.py: about 89 tok/s
free, 44 tok/s under a schema). Greedy decoding only needs to know whether the model's own top
token is allowed: if it is, it is also the top allowed token; only when it is not is the
grammar applied to the full vocabulary. The picks are therefore the same as llama-cpp-python's
(greedy over the grammar-masked logits), as a test checks against ``create_chat_completion``.

Prompts are rendered with the model's chat template exactly as llama-cpp-python's chat handler
renders them, and the KV state of the longest matching prefix of the previous prompt is kept,
as ``Llama.generate`` does. Token log-probabilities come from each step's logits (the model's
unconstrained distribution, as llama-cpp-python reports them), so they need no ``logits_all``.
With ``on_text`` the reply is streamed as it is decoded (``TextStream`` holds back a split
multi-byte character or a possible stop string until the next token settles it).

Usage::

    template = ChatTemplate(llama)
    prompt, stops = template.tokens(messages)
    result = greedy_decode(llama, prompt, schema=schema, max_tokens=96, stop=stops)
    result.text, result.cached_tokens
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from compose.generators.base import ContextOverflowError, GenerationError, Message, TextStream

if TYPE_CHECKING:  # llama_cpp loads its shared library on import: only where it is used
    from llama_cpp import Llama, llama_token_data
    from llama_cpp.llama_types import ChatCompletionRequestMessage


class ChatTemplate:
    """The GGUF's chat template, applied as llama-cpp-python applies it."""

    def __init__(self, llama: Llama) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        model = llama._model
        self.llama = llama
        self.formatter = Jinja2ChatFormatter(
            template=llama.metadata["tokenizer.chat_template"],
            eos_token=model.token_get_text(model.token_eos()),
            bos_token=model.token_get_text(model.token_bos()))

    def tokens(self, messages: list[Message], suffix: str = "") -> tuple[list[int], list[str]]:
        """Prompt tokens (plus ``suffix`` text forced as the reply's start) and stop strings."""
        # Message's fields are those of llama_cpp's message TypedDicts
        result = self.formatter(messages=cast(
            "list[ChatCompletionRequestMessage]", [m.model_dump() for m in messages]))
        tokens = self.llama.tokenize((result.prompt + suffix).encode("utf-8"),
                                     add_bos=not result.added_special, special=True)
        stops = result.stop if isinstance(result.stop, list) else [result.stop or ""]
        return tokens, [s for s in stops if s]


class GrammarCheck:
    """A llama.cpp grammar sampler asked about one token, or about all when it must be."""

    def __init__(self, llama: Llama, schema: dict[str, Any]) -> None:
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar

        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        self._llama_cpp = llama_cpp
        self.sampler = llama_cpp.llama_sampler_init_grammar(
            llama._model.vocab, grammar._grammar.encode(), grammar._root.encode())
        if not self.sampler:
            raise GenerationError("llama.cpp could not compile the JSON schema grammar")
        n_vocab = llama.n_vocab()
        self._one = (llama_cpp.llama_token_data * 1)()
        self._all = (llama_cpp.llama_token_data * n_vocab)()
        self._all_view = np.ctypeslib.as_array(self._all)  # structured: id, logit, p
        self._all_view["id"] = np.arange(n_vocab, dtype=np.int32)

    def allows(self, token: int, logit: float) -> bool:
        # llama_cpp declares the field as its ctypes type; ctypes takes and returns plain ints
        self._one[0].id = token  # type: ignore[assignment]
        self._one[0].logit, self._one[0].p = logit, 0.0
        self._apply(self._one, 1)
        return self._one[0].logit != float("-inf")

    def best_allowed(self, logits: np.ndarray) -> int:
        self._all_view["id"] = np.arange(len(logits), dtype=np.int32)
        self._all_view["logit"] = logits
        self._apply(self._all, len(logits))
        return int(self._all_view["id"][int(np.argmax(self._all_view["logit"]))])

    def accept(self, token: int) -> None:
        self._llama_cpp.llama_sampler_accept(self.sampler, token)

    def close(self) -> None:
        if self.sampler:
            self._llama_cpp.llama_sampler_free(self.sampler)
            self.sampler = None

    def _apply(self, data: ctypes.Array[llama_token_data], size: int) -> None:
        array = self._llama_cpp.llama_token_data_array(
            data=ctypes.cast(data, self._llama_cpp.llama_token_data_p), size=size,
            selected=-1, sorted=False)
        self._llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(array))


@dataclass
class Decoded:
    text: str
    tokens_in: int
    tokens_out: int
    cached_tokens: int
    token_logprobs: list[float] = field(default_factory=list)


def greedy_decode(llama: Llama, prompt: list[int], *, schema: dict[str, Any] | None,
                  max_tokens: int, stop: list[str],
                  on_text: Callable[[str], None] | None = None) -> Decoded:
    """Decode greedily after ``prompt`` on the model's main context (the caller holds it);
    ``on_text`` receives the reply's text as it is decoded."""
    import llama_cpp

    n_ctx = llama.n_ctx()
    if len(prompt) >= n_ctx:
        raise ContextOverflowError(
            f"llama.cpp: the prompt has {len(prompt)} tokens, more than the context window of "
            f"{n_ctx} (raise generator.n_ctx)", tokens=len(prompt), limit=n_ctx)
    budget = min(max_tokens, n_ctx - len(prompt))
    cached = _reuse_prefix(llama, prompt)
    llama.eval(prompt[cached:])
    grammar = GrammarCheck(llama, schema) if schema is not None else None
    stream = TextStream(on_text, stop) if on_text is not None else None
    vocab, n_vocab = llama._model.vocab, llama.n_vocab()
    generated: list[int] = []
    logprobs: list[float] = []
    text = b""
    try:
        for _ in range(budget):
            pointer = llama._ctx.get_logits_ith(-1)
            row = np.ctypeslib.as_array(pointer, shape=(n_vocab,))
            token = int(np.argmax(row))
            if grammar is not None and not grammar.allows(token, float(row[token])):
                token = grammar.best_allowed(row)
            logprobs.append(float(row[token]) - logsumexp(row))
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                logprobs.pop()
                break
            generated.append(token)
            if grammar is not None:
                grammar.accept(token)
            text = llama.detokenize(generated, prev_tokens=prompt)
            if any(s.encode() in text for s in stop):
                text = _cut_at_stop(text, stop)
                break
            if stream is not None:
                # An incomplete trailing character decodes to nothing here, so it waits.
                stream.update(text.decode("utf-8", errors="ignore"))
            if len(generated) < budget:
                llama.eval([token])
    finally:
        if grammar is not None:
            grammar.close()
    reply = text.decode("utf-8", errors="ignore")
    if stream is not None:
        stream.finish(reply)
    return Decoded(text=reply, tokens_in=len(prompt),
                   tokens_out=len(generated), cached_tokens=cached, token_logprobs=logprobs)


def _reuse_prefix(llama: Llama, prompt: list[int]) -> int:
    """Keep the KV state of the longest common prefix with what the context holds (all but the
    last prompt token at most, whose logits are needed); ``eval`` drops the rest."""
    kept = llama.input_ids[: llama.n_tokens]
    limit = min(len(kept), len(prompt) - 1)
    mismatch = np.nonzero(kept[:limit] != np.asarray(prompt[:limit]))[0]
    common = int(mismatch[0]) if len(mismatch) else limit
    llama.n_tokens = common
    return common


def _cut_at_stop(text: bytes, stop: list[str]) -> bytes:
    cuts = [text.index(s.encode()) for s in stop if s.encode() in text]
    return text[: min(cuts)]


def logsumexp(row: np.ndarray) -> float:
    peak = float(row.max())
    return peak + float(np.log(np.exp(row - peak, dtype=np.float64).sum()))

"""Hugging Face transformers on CPU, optionally with INT8 dynamic quantization.

This backend gives access to model internals (needed for position-robustness methods such as
Ms-PoE) and to INT8 weights via ``torch.ao.quantization.quantize_dynamic``. It accepts an HF
model directory, or a GGUF file / registry name, which transformers dequantizes on load - so
the embedded SmolLM2 works here too. It cannot constrain decoding to a schema, so structured
outputs go through the parse-retry loop. With ``on_text`` the reply is streamed: transformers
hands each new token to a streamer during ``generate``, and the tokens so far are decoded
and forwarded through ``TextStream``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from compose.config import DEFAULT_HOME, GeneratorConfig
from compose.generators.adapters import refuse_adapter
from compose.generators.base import Generation, Message, TextStream, cut_at_stop
from compose.generators.models import resolve_gguf

if TYPE_CHECKING:  # transformers and torch take seconds to import: only where they are used
    import torch
    from transformers import BatchEncoding, PreTrainedTokenizerBase


def dequantized_checkpoint(gguf: Path) -> Path:
    """Dequantize a GGUF file into an HF checkpoint once and reuse it: converting the
    tokenizer and tensors takes tens of seconds, loading the saved checkpoint about one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = DEFAULT_HOME / "hf-from-gguf" / f"{gguf.stem}-{gguf.stat().st_size}"
    if (target / "config.json").is_file():
        return target
    staging = target.with_name(target.name + ".partial")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The tensors are plain float32 after loading; only the GGUF marker blocks saving.
    model.hf_quantizer = None  # type: ignore[assignment]  # transformers leaves it undeclared
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.save_pretrained(staging)
    model.save_pretrained(staging)
    staging.rename(target)
    return target


class TransformersGenerator:
    supports_json_schema = False

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase, model_id: str) -> None:
        # a transformers causal LM or its INT8 copy: transformers names the type of a model
        # with ``generate`` only privately, and quantize_dynamic returns an untyped Module
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> TransformersGenerator:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        refuse_adapter(config.adapter, "the transformers backend")
        if config.n_threads:
            torch.set_num_threads(config.n_threads)
        source = Path(config.model).expanduser()
        if source.is_dir():
            directory, label = source, source.name
        else:
            gguf = resolve_gguf(config.model)
            directory, label = dequantized_checkpoint(gguf), gguf.name
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
        model.eval()  # type: ignore[no-untyped-call]  # unannotated in transformers
        if config.int8:
            model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                model, {torch.nn.Linear}, dtype=torch.qint8
            )  # unannotated in torch
        torch.manual_seed(config.seed)
        suffix = "+int8" if config.int8 else ""
        return cls(model, tokenizer, f"hf:{label}{suffix}")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

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
        import torch

        # with return_dict=True the template's result is a BatchEncoding (ids and mask)
        prompt_ids = cast("BatchEncoding", self.tokenizer.apply_chat_template(
            [m.model_dump() for m in messages],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        ))
        stream = TextStream(on_text, stop or []) if on_text is not None else None
        started = time.perf_counter()
        with self._lock, torch.inference_mode():
            output = self.model.generate(
                **prompt_ids,
                max_new_tokens=max_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=None,
                top_k=None,
                output_scores=logprobs,
                return_dict_in_generate=True,
                pad_token_id=self.tokenizer.eos_token_id,
                streamer=_Streamer(self.tokenizer, stream) if stream is not None else None,
            )
        latency = time.perf_counter() - started
        n_in = prompt_ids["input_ids"].shape[1]
        new_tokens = output.sequences[0, n_in:]
        # one sequence of ids decodes to one string
        text = cut_at_stop(cast(str, self.tokenizer.decode(new_tokens, skip_special_tokens=True)),
                           stop or [])
        if stream is not None:
            stream.finish(text)
        token_logprobs = None
        if logprobs:
            scores = self.model.compute_transition_scores(
                output.sequences, output.scores, normalize_logits=True
            )
            token_logprobs = [float(x) for x in scores[0]]
        return Generation(
            text=text,
            tokens_in=int(n_in),
            tokens_out=int(new_tokens.shape[0]),
            latency_s=latency,
            model=self.model_id,
            token_logprobs=token_logprobs,
            constrained=False,
        )


class _Streamer:
    """What ``model.generate(streamer=...)`` calls: ``put`` with the prompt's ids first, then
    with each new token; ``end`` when done. The reply's tokens so far are decoded as the
    final text is (special tokens skipped) and passed to the stream."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stream: TextStream) -> None:
        self.tokenizer = tokenizer
        self.stream = stream
        self.prompt_seen = False
        self.ids: list[int] = []

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.ids.extend(int(i) for i in value.reshape(-1).tolist())
        self.stream.update(cast(str, self.tokenizer.decode(self.ids, skip_special_tokens=True)))

    def end(self) -> None:
        """The final text goes through ``TextStream.finish`` once it is cut at stops."""

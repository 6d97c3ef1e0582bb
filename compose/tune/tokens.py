"""Token ids of a training example, exactly as the llama.cpp backend would see them.

The prompt is rendered with the GGUF's chat template and tokenized by llama.cpp itself (a
vocabulary-only load, a fraction of a second), so tuning trains on the very ids that run-time
decoding conditions on; the HF form of the model shares the GGUF's vocabulary. The target is
the reply's JSON followed by the end-of-turn token that ends constrained decoding.

Usage::

    tokenizer = ExampleTokenizer(resolve_gguf("smollm2-135m"))
    prompt_ids, target_ids = tokenizer(example)
"""

from __future__ import annotations

from pathlib import Path

from compose.generators.base import Message
from compose.tune.example import TrainingExample


class ExampleTokenizer:
    def __init__(self, gguf: Path) -> None:
        from llama_cpp import Llama

        from compose.generators.cpu_backend import ensure_cpu_backend
        from compose.generators.llama_decode import ChatTemplate

        ensure_cpu_backend()
        self.llama = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
        self.template = ChatTemplate(self.llama)
        self.end_of_turn = self.llama.token_eos()

    def prompt(self, messages: list[Message]) -> list[int]:
        return self.template.tokens(messages)[0]

    def __call__(self, example: TrainingExample) -> tuple[list[int], list[int]]:
        target = self.llama.tokenize(example.target.encode("utf-8"), add_bos=False,
                                     special=False)
        return self.prompt(example.messages), [*target, self.end_of_turn]

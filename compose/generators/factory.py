"""Create generators from config, once per process per distinct setting."""

from __future__ import annotations

import threading

from compose.config import GeneratorConfig
from compose.generators.base import Generator

_LOADED: dict[str, Generator] = {}
_LOCK = threading.Lock()


def get_generator(config: GeneratorConfig) -> Generator:
    key = config.model_dump_json(exclude={"max_parse_retries", "timeout_s"})
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _create(config)
        return _LOADED[key]


def _create(config: GeneratorConfig) -> Generator:
    if config.backend == "llama_cpp":
        from compose.generators.llama_cpp import LlamaCppGenerator

        return LlamaCppGenerator.from_config(config)
    if config.backend == "transformers":
        from compose.generators.transformers_backend import TransformersGenerator

        return TransformersGenerator.from_config(config)
    if config.backend == "openai":
        from compose.generators.openai_compat import OpenAICompatGenerator

        return OpenAICompatGenerator.from_config(config)
    raise ValueError(f"unknown generator backend {config.backend!r}")

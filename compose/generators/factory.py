"""Create generators from config, once per process per distinct setting.

``generator.backend`` names a factory in ``BACKENDS``: the built-in backends are imported only
when first used (llama.cpp, transformers and an HTTP client are heavy), and an installed
package adds one through the ``composerag.backends`` entry-point group, pointing at a
``GeneratorConfig -> Generator`` callable (or at a module that calls ``register_backend``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from compose.config import GeneratorConfig
from compose.generators.base import Generator
from compose.plugins import Registry

BackendFactory = Callable[[GeneratorConfig], Generator]

BACKENDS: Registry[BackendFactory] = Registry("generator backend", "composerag.backends", {
    "llama_cpp": "compose.generators.llama_cpp:LlamaCppGenerator.from_config",
    "transformers": "compose.generators.transformers_backend:TransformersGenerator.from_config",
    "openai": "compose.generators.openai_compat:OpenAICompatGenerator.from_config",
})

_LOADED: dict[str, Generator] = {}
_LOCK = threading.Lock()


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator: a factory building a generator from its config, selected by
    ``generator.backend: name``."""
    return BACKENDS.register(name)


def get_generator(config: GeneratorConfig) -> Generator:
    key = config.model_dump_json(exclude={"max_parse_retries", "timeout_s"})
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = BACKENDS.get(config.backend)(config)
        return _LOADED[key]

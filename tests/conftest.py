"""Shared fixtures: the real demo index, the real embedded model, and a scripted runtime."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from compose.config import RetrieverConfig, RuntimeConfig
from compose.corpora.demo import load_demo
from compose.graph.spec import Branch, Condition, EdgeSpec, GraphSpec, NodeSpec
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


def answering(answer: str, delay_s: float = 0.0):
    """A scripted ``answer`` reply citing passage 1, optionally slow (to test deadlines)."""
    def reply(messages):
        time.sleep(delay_s)
        return {"answer": answer, "citations": [1]}
    return reply


def retry_spec(budget: int) -> GraphSpec:
    """retrieve -> answer, looping back while the answer is unknown, at most ``budget`` times."""
    return GraphSpec(
        name="retry_rag",
        entry="retrieve",
        outputs=["answer", "citations"],
        nodes={
            "retrieve": NodeSpec(module="retrieve", params={"k": 2}, inputs={"query": "question"}),
            "answer": NodeSpec(module="answer"),
        },
        edges=[
            EdgeSpec(source="retrieve", to="answer"),
            EdgeSpec(source="answer", branches=[
                Branch(to="retrieve", when=Condition(field="is_unknown", equals=True),
                       budget=budget),
                Branch(to="END"),
            ]),
        ],
    )

"""The demo corpus: original passages about an invented island nation, Kestrevia.

Because the world is invented, a model cannot answer from memory: the demo shows retrieval
doing its job. ``questions.jsonl`` holds single-hop, bridge and comparison questions with gold
answers and gold passage ids.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from compose.corpus import BenchmarkData, load_corpus, load_questions


def demo_file(name: str) -> Path:
    return Path(str(resources.files("compose.corpora.demo").joinpath(name)))


def load_demo() -> BenchmarkData:
    return BenchmarkData(
        name="demo",
        corpus=load_corpus(demo_file("passages.jsonl")),
        questions=load_questions(demo_file("questions.jsonl")),
    )


def demo_index() -> Path:
    """The demo corpus index under the composerag home, built on first use. Reads only the
    passages: a run that defaults to this index is waiting for it."""
    from compose.retrieval.store import ensure_index

    return ensure_index(load_corpus(demo_file("passages.jsonl")), "demo")

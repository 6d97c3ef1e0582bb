"""The built-in modules against the real embedded model and the real demo index."""

from __future__ import annotations

from compose.corpora.demo import load_demo
from compose.modules.answer import Answer
from compose.modules.retrieve import Retrieve


def demo_passages(*titles: str):
    by_title = {p.title: p for p in load_demo().corpus}
    return [by_title[t] for t in titles]


def test_retrieve_module_uses_the_index(real_runtime):
    ctx = real_runtime.context()
    out = Retrieve(k=3)({"query": "Who founded Malven & Daughters shipyard?"}, ctx)
    assert len(out.passages) == 3
    assert "Oskar Malven" in [p.title for p in out.passages]
    assert ctx.stats.retriever_s > 0 and ctx.stats.llm_calls == 0


def test_answer_module_with_passages_parses_and_cites_only_given_ids(real_runtime):
    passages = demo_passages("Kelp-oil lamp", "Blue kelp", "Caskel Lighthouse")
    ctx = real_runtime.context()
    out = Answer()({"question": "Who invented the kelp-oil lamp?", "passages": passages}, ctx)
    assert "Vesk" in out.answer
    assert set(out.citations) <= {p.id for p in passages}
    assert ctx.stats.llm_calls >= 1 and ctx.stats.tokens_in > 100


def test_answer_module_closed_book(real_runtime):
    ctx = real_runtime.context()
    out = Answer()({"question": "What is the capital of France?"}, ctx)
    assert "Paris" in out.answer
    assert out.citations == []
    prompt_tokens = ctx.stats.tokens_in
    assert 20 < prompt_tokens < 150  # no passages were put in the prompt

"""VERDICT against the real embedded model (SmolLM2-135M) and the real demo index.

The passages come from the demo corpus (an invented world, so the model cannot answer from
memory) and are ones where the 135M model is reliable: a short passage that states the answer
to a "who invented" question in one sentence. The model itself does not abstain on off-topic
passages (in our trials it named a person from any passage, whatever the prompt), so the
abstention tested here is the module's relevance gate, which skips the passage before any
generator call.
"""

from __future__ import annotations

from compose.api import load_graph
from compose.corpora.demo import load_demo
from compose.modules.interpretation import Interpretation
from compose.modules.verdict import DiversifyPassage
from compose.text import normalize_answer

DEMO = {p.title: p for p in load_demo().corpus}


def test_diversify_answers_from_a_relevant_passage(real_runtime):
    ctx = real_runtime.context()
    out = DiversifyPassage()({"question": "Who invented the kelp-oil lamp?",
                              "passage": DEMO["Kelp-oil lamp"]}, ctx)
    assert out.interpretation is not None, out.reason
    assert "Vesk" in out.interpretation.answer
    assert out.interpretation.question.endswith("?")
    assert out.interpretation.passage.id == DEMO["Kelp-oil lamp"].id
    assert ctx.stats.llm_calls >= 1


def test_diversify_abstains_on_an_irrelevant_passage(real_runtime):
    ctx = real_runtime.context()
    out = DiversifyPassage()({"question": "Who designed the Velmora Bridge?",
                              "passage": DEMO["Blue kelp"]}, ctx)
    assert out.interpretation is None and "off-topic" in out.reason
    assert ctx.stats.llm_calls == 0


def test_verdict_graph_lists_grounded_readings_over_the_demo_index(real_runtime):
    graph = load_graph("verdict", runtime=real_runtime)
    state = graph.invoke(question="Who invented the kelp-oil lamp?")
    kept = [Interpretation.model_validate(i) for i in state["interpretations"]]
    assert kept and not state["abstained"]
    for item in kept:  # grounded by construction: each answer is in its own passage
        assert normalize_answer(item.answer) in normalize_answer(
            f"{item.passage.title} {item.passage.text}")
    assert "Doran Vesk" in state["answer"]
    assert state["citations"] == list(dict.fromkeys(i.passage.id for i in kept))
    calls = {e["node"]: e["llm_calls"] for e in state["trace"]}
    assert 1 <= calls["diversify"] <= 5 * 3  # k passages, each at most 1 + 2 parse retries
    assert calls["consolidate"] == 0

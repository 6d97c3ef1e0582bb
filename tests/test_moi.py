"""MoI re-ranking without the real model: proposals, least-squares aggregation, slot-weight
fitting and storage, scoring signals, and the module and graph driven by a fake generator whose
position bias is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from compose.api import load_graph
from compose.cli.moi import moi_app
from compose.config import RetrieverConfig, RuntimeConfig
from compose.corpus import ScoredPassage
from compose.generators.base import Generation
from compose.generators.llama_cpp import reused_prefix
from compose.graph.load import load_spec
from compose.modules.answer import Answer, AnswerInput
from compose.modules.moi.aggregate import (
    design_matrix,
    estimate_utilities,
    fit_slot_weights,
    measured_mask,
    place,
)
from compose.modules.moi.positions import PositionStore, default_weights
from compose.modules.moi.proposals import propose
from compose.modules.moi.rerank import MoiRerank
from compose.modules.moi.signals import majority_answer, score_passes
from compose.runtime import Runtime

# ---------------------------------------------------------------- proposals


@pytest.mark.parametrize("k", [1, 2, 5, 7])
def test_cyclic_is_a_latin_square(k):
    orders = propose("cyclic", k)
    assert len(orders) == k and orders[0] == list(range(k))
    for order in orders:
        assert sorted(order) == list(range(k))
    for slot in range(k):  # every passage in every slot exactly once
        assert sorted(order[slot] for order in orders) == list(range(k))


@pytest.mark.parametrize("k,m", [(5, 5), (5, 12), (4, 24), (3, 100)])
def test_random_orders_are_distinct_permutations(k, m):
    orders = propose("random", k, m, np.random.default_rng(3))
    assert len(orders) == min(m, math.factorial(k))
    assert len({tuple(o) for o in orders}) == len(orders)
    assert all(sorted(o) == list(range(k)) for o in orders)


def test_random_orders_follow_the_seed():
    first = propose("random", 6, 4, np.random.default_rng(1))
    assert first == propose("random", 6, 4, np.random.default_rng(1))
    assert first != propose("random", 6, 4, np.random.default_rng(2))


@pytest.mark.parametrize("k,m", [(5, 2), (5, 3), (5, 5), (3, 9)])
def test_prior_orders_stay_near_the_retrieval_order(k, m):
    orders = propose("prior", k, m)
    count = min(m, k)
    assert len(orders) == count and orders[0] == list(range(k))
    assert [o[0] for o in orders] == list(range(count))  # each head rank leads once
    for order in orders:
        assert sorted(order) == list(range(k))
        rest = [p for p in range(k) if p != order[0]]
        assert order[1:] == rest  # one move-to-front away from the retrieval order
        assert order[count:] == list(range(count, k))  # ranks past M never move
    assert measured_mask(orders).tolist() == [p < count for p in range(k)]


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown proposal strategy"):
        propose("greedy", 3)


# ---------------------------------------------------------------- aggregation


def test_least_squares_recovers_known_utilities():
    rng = np.random.default_rng(0)
    k = 6
    weights = np.array([1.0, 0.3, 0.1, 0.0, 0.2, 0.6])
    utilities = rng.normal(size=k)
    orders = propose("random", k, 60, rng)
    y = 0.7 + design_matrix(orders, weights) @ utilities + rng.normal(scale=0.01, size=60)
    estimated = estimate_utilities(orders, y, weights, ridge_lambda=1e-3)
    # Every order shows every passage, so utilities are known up to a common shift.
    np.testing.assert_allclose(estimated, utilities - utilities.mean(), atol=0.03)
    assert list(np.argsort(-estimated)) == list(np.argsort(-utilities))


def test_cyclic_design_ranks_passages_from_k_noisy_outcomes():
    rng = np.random.default_rng(5)
    weights = default_weights(5)
    utilities = np.array([0.1, -0.4, 0.9, 0.0, 0.3])
    orders = propose("cyclic", 5)
    y = design_matrix(orders, weights) @ utilities + rng.normal(scale=0.005, size=5)
    estimated = estimate_utilities(orders, y, weights, ridge_lambda=1e-4)
    assert list(np.argsort(-estimated)) == [2, 4, 0, 3, 1]


def test_unmoved_passages_are_not_measured_and_keep_their_slot():
    orders = propose("prior", 5, 2)  # identity, and ranks 1 and 2 swapped
    estimated = estimate_utilities(orders, [0.0, 1.0], default_weights(5), ridge_lambda=0.1)
    assert np.isnan(estimated[2:]).all() and estimated[1] > estimated[0]
    assert place(estimated, orders, default_weights(5)) == [1, 0, 2, 3, 4]


def test_placement_fills_the_largest_weight_first():
    utilities = np.array([0.1, 0.5, -0.2, 0.3])
    weights = np.array([0.2, 0.0, 1.0, 0.6])
    assert place(utilities, propose("cyclic", 4), weights) == [0, 2, 1, 3]


def test_ties_keep_the_retrieval_order():
    assert place(np.zeros(4), propose("cyclic", 4), default_weights(4)) == [0, 1, 2, 3]


def test_alternating_least_squares_recovers_slot_weights():
    rng = np.random.default_rng(11)
    k = 5
    true = np.array([1.0, 0.35, 0.0, 0.2, 0.7])  # a U shape: first and last slots count
    samples = []
    for _ in range(80):
        # utilities follow the retriever on average (this fixes the sign of the weights)
        u = np.linspace(1.0, -1.0, k) * 0.5 + rng.normal(size=k)
        orders = propose("random", k, 2 * k, rng)
        y = rng.normal() + design_matrix(orders, true) @ u + rng.normal(scale=0.02, size=2 * k)
        samples.append((orders, y))
    fitted = fit_slot_weights(samples, ridge_lambda=1e-3)
    np.testing.assert_allclose(fitted, true, atol=0.05)


def test_fitting_refuses_uninformative_samples():
    flat = [(propose("random", 3, 6), [0.5] * 6)] * 4
    with pytest.raises(ValueError, match="do not depend on the passage order"):
        fit_slot_weights(flat)
    square = [(propose("cyclic", 3), [0.1, 0.5, 0.2])] * 4
    with pytest.raises(ValueError, match="M > k"):
        fit_slot_weights(square)


# ---------------------------------------------------------------- signals, store, prefix


def test_consistency_scores_agreement_with_the_majority():
    answers = ["Oslo", "unknown", "oslo.", "Bergen", ""]
    assert majority_answer(answers) == "Oslo"
    assert score_passes("consistency", answers, [None] * 5) == [1, 0, 1, 0, 0]
    assert majority_answer(["unknown", ""]) is None


def test_logprob_scores_non_answers_as_the_worst_pass():
    scores = score_passes("logprob", ["Oslo", "unknown", "Bergen"], [-0.5, -0.1, -1.5])
    assert scores == [-0.5, -1.5, -1.5]


def test_oracle_needs_references_and_scores_f1():
    assert score_passes("oracle", ["the Aubeth River", "Caskel"], [None, None],
                        ["Aubeth River"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="reference"):
        score_passes("oracle", ["x"], [None])


def test_position_store_round_trip_and_default(tmp_path):
    store = PositionStore(tmp_path / "w.json")
    weights, source = store.weights_for("gguf:m", 3)
    assert source == "default" and weights.tolist() == [1.0, 0.5, 0.0]
    store.save("gguf:m", np.array([0.2, 1.0, 0.0]), signal="oracle")
    weights, source = store.weights_for("gguf:m", 3)
    assert source == "fitted" and weights.tolist() == [0.2, 1.0, 0.0]
    assert store.weights_for("gguf:m", 4)[1] == "default"  # keyed by slot count too
    assert store.load()["gguf:m"]["3"]["signal"] == "oracle"


def test_show_positions_cli_prints_the_store(tmp_path):
    PositionStore(tmp_path / "w.json").save("gguf:m", np.array([1.0, 0.0]))
    result = CliRunner().invoke(moi_app, ["show-positions", "--store", str(tmp_path / "w.json")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["gguf:m"]["2"]["weights"] == [1.0, 0.0]


def test_fit_positions_cli_rejects_an_unknown_signal():
    result = CliRunner().invoke(moi_app, ["fit-positions", "--dataset", "demo",
                                          "--signal", "vibes"])
    assert result.exit_code != 0 and "signal" in result.output


def test_reused_prefix_mirrors_llama_cpp():
    assert reused_prefix([1, 2, 3, 9, 9], [1, 2, 3, 4]) == 3
    assert reused_prefix([], [1, 2]) == 0
    assert reused_prefix([1, 2, 3], [1, 2, 3]) == 2  # the last token is re-evaluated


# ---------------------------------------------------------------- module and graph


GOLD_TEXT = "Ilse Ranneth was born in Caskel."


class BiasedGenerator:
    """Answers right, and confidently, only when the gold passage is shown in one of the
    ``favoured`` slots (1-based); answers the ``answer`` module's JSON prompt too. Records
    every prompt."""

    model_id = "fake-biased"
    supports_json_schema = True

    def __init__(self, favoured: tuple[int, ...] = (1,)):
        self.favoured = favoured
        self.prompts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages, **kwargs) -> Generation:
        user = messages[-1].content
        self.prompts.append(user)
        gold_first = any(f"[{slot}] Ranneth: {GOLD_TEXT}" in user for slot in self.favoured)
        if user.startswith("Question:"):  # an MoI exploratory pass
            reply = {"answer": "Caskel" if gold_first else "Velmora"}
            logprobs = [-0.1, -0.2] if gold_first else [-1.0, -2.0]
        else:
            first_line = user.split("\n")[1]
            reply = {"answer": "Caskel" if GOLD_TEXT in first_line else "unknown",
                     "citations": [1]}
            logprobs = None
        return Generation(text=json.dumps(reply), tokens_in=len(user.split()), tokens_out=2,
                          token_logprobs=logprobs if kwargs.get("logprobs") else None)


def passages_with_gold_at(rank: int, k: int = 5) -> list[ScoredPassage]:
    passages = [ScoredPassage(id=f"d{i}", title=f"Filler {i}", text=f"Filler passage {i}.",
                              rank=i + 1) for i in range(k)]
    passages[rank - 1] = ScoredPassage(id="gold", title="Ranneth", text=GOLD_TEXT, rank=rank)
    return passages


def fake_context(index=None, favoured: tuple[int, ...] = (1,)):
    config = RuntimeConfig(retriever=RetrieverConfig(index=str(index) if index else None))
    return Runtime(config, generator=BiasedGenerator(favoured)).context()


@pytest.mark.parametrize("signal,favoured", [("logprob", (1,)), ("oracle", (1,)),
                                             ("consistency", (1, 2, 3))])
def test_cyclic_moi_moves_the_useful_passage_into_the_first_slot(signal, favoured, tmp_path):
    """Consistency needs the right answer to be the majority: the fake answers right with the
    gold passage in any of the first three slots."""
    ctx = fake_context(favoured=favoured)
    passages = passages_with_gold_at(4)
    out = MoiRerank(signal=signal, weights_path=str(tmp_path / "none.json"))(
        {"question": "Where was the designer born?", "passages": passages,
         "references": ["Caskel"]}, ctx)
    assert out.passages[0].id == "gold"
    assert sorted(p.id for p in out.passages) == sorted(p.id for p in passages)
    assert len(out.trials) == 5 and ctx.stats.llm_calls == 5
    assert {tuple(t.order) for t in out.trials} == {
        tuple(passages[i].id for i in order) for order in propose("cyclic", 5)}
    best = max(out.utilities, key=lambda u: u.utility)
    assert best.id == "gold" and out.weights_source == "default"
    assert out.tokens_prompted == sum(t.tokens_in for t in out.trials)


def test_prior_pruning_with_two_orders(tmp_path):
    ctx = fake_context()
    out = MoiRerank(strategy="prior", m=2, weights_path=str(tmp_path / "w.json"))(
        {"question": "Where?", "passages": passages_with_gold_at(2)}, ctx)
    assert [p.id for p in out.passages] == ["gold", "d0", "d2", "d3", "d4"]
    assert ctx.stats.llm_calls == 2
    assert [u.utility is None for u in out.utilities] == [False, False, True, True, True]


def test_fitted_weights_decide_the_slot(tmp_path):
    """A generator that reads slot 4 best: with its fitted weights, MoI finds the useful
    passage and puts it there, not first."""
    store = PositionStore(tmp_path / "w.json")
    store.save("fake-biased", np.array([0.0, 0.1, 0.2, 1.0, 0.5]))
    out = MoiRerank(weights_path=str(store.path))(
        {"question": "Where?", "passages": passages_with_gold_at(1)}, fake_context(favoured=(4,)))
    assert out.weights_source == "fitted" and out.passages[3].id == "gold"
    assert max(out.utilities, key=lambda u: u.utility).id == "gold"


def test_answer_layout_explores_with_the_answer_prompt(tmp_path):
    """Vote over the answer module's own prompts: each pass is the answer the final node
    would give for that order (the fake answers right only with the gold passage first)."""
    ctx = fake_context()
    passages = passages_with_gold_at(4)
    out = MoiRerank(mode="vote", layout="answer", weights_path=str(tmp_path / "w.json"))(
        {"question": "Where was the designer born?", "passages": passages}, ctx)
    prompts = ctx.runtime.generator.prompts
    assert len(prompts) == 5 and not any(p.startswith("Question:") for p in prompts)
    by_id = {p.id: p for p in passages}
    answer = Answer(max_passages=5)
    for trial in out.trials:
        shown = [by_id[i] for i in trial.order]
        expected = answer.prompt.render(**answer.prompt_fields(
            AnswerInput(question="Where was the designer born?", passages=shown)))
        assert expected[-1].content in prompts
    assert out.voted and out.vote_answer == "Caskel"
    assert [t.answer for t in out.trials].count("unknown") == 4


def test_keep_and_shuffle_make_no_call():
    ctx = fake_context()
    passages = passages_with_gold_at(3)
    kept = MoiRerank(mode="keep")({"question": "Q?", "passages": passages}, ctx)
    shuffled = MoiRerank(mode="shuffle", seed=4)({"question": "Q?", "passages": passages}, ctx)
    again = MoiRerank(mode="shuffle", seed=4)({"question": "Q?", "passages": passages}, ctx)
    assert kept.passages == passages and ctx.stats.llm_calls == 0
    assert sorted(p.id for p in shuffled.passages) == sorted(p.id for p in passages)
    assert shuffled.passages == again.passages and shuffled.passages != passages


def test_module_params_are_validated():
    with pytest.raises(ValueError):
        MoiRerank(m=1)
    with pytest.raises(ValueError):
        MoiRerank(signal="judge")


def test_moi_rag_graph_reranks_then_answers_once(demo_index):
    ctx = fake_context(demo_index)
    generator = ctx.generator
    graph = load_graph("moi_rag", runtime=ctx.runtime)
    state = graph.invoke({"question": "In which town was the designer of the Velmora Bridge "
                                      "born?"})
    explore_calls = [p for p in generator.prompts if p.startswith("Question:")]
    assert len(explore_calls) == 5 and len(generator.prompts) == 6
    assert [e["node"] for e in state["trace"]] == ["retrieve", "moi_rerank", "answer"]
    assert len(state["trials"]) == 5 and state["tokens_prompted"] > 0


def test_vote_mode_ends_with_the_majority_answer(demo_index):
    ctx = fake_context(demo_index)
    graph = load_graph("moi_rag", runtime=ctx.runtime,
                       overrides=["nodes.moi_rerank.params.mode=vote"])
    state = graph.invoke({"question": "Who designed the Velmora Bridge?"})
    assert [e["node"] for e in state["trace"]] == ["retrieve", "moi_rerank"]
    assert state["answer"] == "Velmora"  # gold is not in the demo index: every pass says so
    assert len(ctx.generator.prompts) == 5


VARIANTS = {
    "retrieval order": ["nodes.moi_rerank.params.mode=keep"],
    "random order": ["nodes.moi_rerank.params.mode=shuffle"],
    "vote": ["nodes.moi_rerank.params.mode=vote"],
    "moi M=k": [],
    "moi prior M=3": ["nodes.moi_rerank.params.strategy=prior", "nodes.moi_rerank.params.m=3"],
}


@pytest.mark.parametrize("name", VARIANTS)
def test_comparison_variants_are_plain_overrides(name):
    """Each row of the comparison is moi_rag plus --set overrides, parsed as YAML scalars."""
    spec = load_spec("moi_rag", VARIANTS[name])
    params = MoiRerank(spec.nodes["moi_rerank"].params).params
    expected = {"retrieval order": ("keep", "cyclic", None), "random order": ("shuffle",
                "cyclic", None), "vote": ("vote", "cyclic", None), "moi M=k": ("moi", "cyclic",
                None), "moi prior M=3": ("moi", "prior", 3)}[name]
    assert (params.mode, params.strategy, params.m) == expected


@pytest.mark.skipif("rerank" not in load_spec("compose_rag").nodes,
                    reason="compose_rag.yaml has no rerank node yet (change requested)")
def test_moi_switches_into_compose_rag_by_override():
    spec = load_spec("compose_rag", ["nodes.rerank.params.mode=moi"])
    assert spec.nodes["rerank"].module == "moi_rerank"
    assert [e.to for e in spec.edges_from("retrieve")] == ["rerank"]
    assert [e.to for e in spec.edges_from("rerank")] == ["answer"]
    assert MoiRerank(load_spec("compose_rag").nodes["rerank"].params).params.mode == "keep"


def test_trace_view_summarises_a_rerank_event():
    from compose.cli.trace_view import summarize_event

    passages = [{"id": "p2", "title": "Second"}, {"id": "p1", "title": "First"}]
    event = {"node": "rerank", "module": "moi_rerank", "latency_s": 1.0, "llm_calls": 2,
             "output": {"passages": passages, "trials": [{}, {}], "tokens_prompted": 200,
                        "tokens_evaluated": 150}}
    text = summarize_event(event)
    assert "re-ranked after 2 orders (150 of 200 prompt tokens evaluated): Second; First" in text
    kept = summarize_event({**event, "output": {"passages": passages}})
    assert "order: Second; First" in kept

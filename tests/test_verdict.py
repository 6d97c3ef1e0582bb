"""VERDICT and the diversify-then-verify baseline: consolidation on hand-made embeddings,
the modules and graphs with a scripted generator over the real demo index, and the ambiguity
metrics on hand-written records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compose.api import load_graph
from compose.corpora.benchmarks import load_asqa
from compose.corpora.demo import load_demo
from compose.eval.metrics import compute_metrics
from compose.modules.consolidate import Consolidate, ConsolidateParams, consolidate_vectors
from compose.modules.dtv import Interpret, clean_readings
from compose.modules.interpretation import Interpretation, ListInterpretations
from compose.modules.interpretation_checks import KeepVerified, VerifyInterpretations
from compose.modules.verdict import DiversifyPassage, VerifiedDiversify
from tests.conftest import SHARED_DATA, scripted_runtime

DEMO = {p.title: p for p in load_demo().corpus}
LAMP = "Who invented the kelp-oil lamp?"


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def two_clusters_and_noise() -> tuple[np.ndarray, list[int], list[int], list[int]]:
    """Rows 0, 3, 6 around axis 0; rows 2, 4, 5 around axis 1; rows 1 and 7 stand alone.
    The other members lean symmetrically off their axis, so the centre lies on the axis and
    rows 3 and 4, which sit on it, are the members nearest their centres. The two clusters
    share a component (they are closer to each other than to the lone rows), so no tie in
    distances decides where a lone row goes."""
    rows = np.zeros((8, 8))
    for row, axis, off, lean in ((0, 0, 2, 0.15), (6, 0, 2, -0.15), (3, 0, 2, 0.0),
                                 (2, 1, 3, 0.15), (5, 1, 3, -0.15), (4, 1, 3, 0.0)):
        rows[row, axis], rows[row, off], rows[row, 5] = 1.0, lean, 0.6
    rows[1, 4] = rows[7, 6] = 1.0
    return unit(rows), [0, 3, 6], [2, 4, 5], [1, 7]


def test_consolidation_keeps_one_representative_per_cluster_and_drops_noise():
    vectors, _, _, noise = two_clusters_and_noise()
    result = consolidate_vectors(vectors, ConsolidateParams(method="hdbscan"))
    assert result.clusters == 2
    assert sorted(result.keep) == [3, 4]  # the members on the centres
    assert not set(result.keep) & set(noise)
    assert sorted(result.support) == [3, 3] and result.noise == 2


def test_kmeans_variant_treats_a_lone_reading_as_noise():
    """k-means has no noise: two lone rows would form a pair cluster, so one is used here."""
    vectors, _, _, _ = two_clusters_and_noise()
    result = consolidate_vectors(vectors[:7], ConsolidateParams(method="kmeans"))
    assert sorted(result.keep) == [3, 4] and result.clusters == 2 and result.noise == 1


@pytest.mark.parametrize("method", ["hdbscan", "kmeans"])
def test_consolidation_keeps_everything_when_all_is_noise(method):
    vectors = unit(np.eye(6)[:5])
    result = consolidate_vectors(vectors, ConsolidateParams(method=method))
    assert result.keep == [0, 1, 2, 3, 4] and result.clusters == 0 and result.noise == 5


def test_consolidation_keeps_a_single_consensus_and_drops_its_outliers():
    """One well-supported reading plus two outliers: plain HDBSCAN would call all noise."""
    rows = np.zeros((5, 6))
    rows[:3, 0], rows[:3, 1] = 1.0, [0.1, -0.1, 0.0]
    rows[3, 3] = rows[4, 4] = 1.0
    result = consolidate_vectors(unit(rows), ConsolidateParams())
    assert result.keep == [2] and result.support == [3] and result.noise == 2
    loose = consolidate_vectors(unit(rows), ConsolidateParams(allow_single_cluster=False))
    assert loose.keep == [0, 1, 2, 3, 4]


def test_consolidation_of_fewer_readings_than_a_cluster_keeps_them():
    vectors = unit(np.eye(4)[:1])
    assert consolidate_vectors(vectors, ConsolidateParams()).keep == [0]


def reading(question: str, answer: str, passage_title: str, **extra) -> Interpretation:
    return Interpretation(question=question, answer=answer, passage=DEMO[passage_title], **extra)


def test_consolidate_module_merges_paraphrases_with_the_project_encoder():
    items = [
        reading("Who invented the kelp-oil lamp?", "Doran Vesk", "Kelp-oil lamp"),
        reading("Who designed the Velmora Bridge?", "Ilse Ranneth", "Velmora Bridge"),
        reading("Whose invention lit the Caskel Lighthouse?", "Doran Vesk", "Caskel Lighthouse"),
        reading("Who was the engineer of the Velmora Bridge?", "Ilse Ranneth", "Velmora Bridge"),
        reading("Who invented the kelp-oil lamp used in lighthouses?", "Doran Vesk",
                "Kelp-oil lamp"),
        reading("Who identified blue kelp?", "Sera Ambrin", "Blue kelp"),
    ]
    out = Consolidate()({"interpretations": items}, scripted_runtime([]).context())
    answers = sorted(i.answer for i in out.interpretations)
    assert answers == ["Doran Vesk", "Ilse Ranneth"]
    assert out.clusters == 2  # the lone blue-kelp reading is never a representative
    supports = [i.support for i in out.interpretations]
    assert supports[0] >= 3 > supports[1] == 2  # the larger cluster comes first
    assert sum(supports) + out.noise == len(items)


def test_consolidate_on_answers_alone_separates_readings_that_repeat_the_question():
    items = [reading(LAMP, answer, "Kelp-oil lamp")
             for answer in ("Doran Vesk", "Sera Ambrin", "Doran Vesk", "Sera Ambrin")]
    out = Consolidate(embed_text="answer")({"interpretations": items},
                                           scripted_runtime([]).context())
    assert sorted(i.answer for i in out.interpretations) == ["Doran Vesk", "Sera Ambrin"]
    assert [i.support for i in out.interpretations] == [2, 2]


def diversify_reply(messages) -> dict:
    """Answers from the passage shown: the lamp passage yields its inventor, the lighthouse
    passage a copied sentence, the bridge passage a name it does not contain."""
    prompt = messages[-1].content
    if "Kelp-oil lamp:" in prompt:
        return {"question": "Who invented the kelp-oil lamp for lighthouses?",
                "answer": "Doran Vesk"}
    if "Caskel Lighthouse:" in prompt:
        return {"question": "The lighthouse was lit with a kelp-oil lamp.", "answer": "Doran Vesk"}
    if "Blue kelp:" in prompt:
        return {"question": "null", "answer": "null"}
    return {"question": "Who built it?", "answer": "Oskar Malven"}


def test_diversify_passage_keeps_a_grounded_reading():
    runtime = scripted_runtime(diversify_reply)
    out = DiversifyPassage()({"question": LAMP, "passage": DEMO["Kelp-oil lamp"]},
                             runtime.context())
    assert out.interpretation.answer == "Doran Vesk"
    assert out.interpretation.question == "Who invented the kelp-oil lamp for lighthouses?"
    assert out.interpretation.passage.id == DEMO["Kelp-oil lamp"].id


def test_diversify_passage_abstains_on_null_and_on_an_answer_missing_from_the_passage():
    runtime = scripted_runtime(diversify_reply)
    null = DiversifyPassage()({"question": LAMP, "passage": DEMO["Blue kelp"]},
                              runtime.context())
    assert null.interpretation is None and "abstained" in null.reason
    # "Oskar Malven" does not occur in the bridge passage; the relevance gate is off here
    missing = DiversifyPassage(min_relevance=-1.0)(
        {"question": LAMP, "passage": DEMO["Velmora Bridge"]}, runtime.context())
    assert missing.interpretation is None and "does not occur" in missing.reason
    kept = DiversifyPassage(min_relevance=-1.0, require_answer_in_passage=False)(
        {"question": LAMP, "passage": DEMO["Velmora Bridge"]}, runtime.context())
    assert kept.interpretation.answer == "Oskar Malven"


def test_diversify_passage_skips_an_off_topic_passage_without_a_call():
    runtime = scripted_runtime(diversify_reply)
    ctx = runtime.context()
    out = DiversifyPassage()({"question": LAMP, "passage": DEMO["Velmora Bridge"]}, ctx)
    assert out.interpretation is None and "off-topic" in out.reason
    assert ctx.stats.llm_calls == 0 and runtime.generator.calls == []


def test_diversify_passage_replaces_a_copied_sentence_by_the_question():
    out = DiversifyPassage()({"question": LAMP, "passage": DEMO["Caskel Lighthouse"]},
                             scripted_runtime(diversify_reply).context())
    assert out.interpretation.question == LAMP and out.interpretation.answer == "Doran Vesk"


@pytest.mark.parametrize("concurrency", [1, 3])
def test_verified_diversify_reads_the_top_k_and_counts_every_call(concurrency):
    passages = [DEMO[t] for t in ("Kelp-oil lamp", "Blue kelp", "Caskel Lighthouse",
                                  "Velmora Bridge", "Oskar Malven")]
    runtime = scripted_runtime(diversify_reply)
    ctx = runtime.context()
    out = VerifiedDiversify(k=4, max_concurrency=concurrency)(
        {"question": LAMP, "passages": passages}, ctx)
    assert [i.passage.title for i in out.interpretations] == ["Kelp-oil lamp",
                                                               "Caskel Lighthouse"]
    assert out.abstentions == 2 and out.unparsable == 0  # blue kelp: null; bridge: off-topic
    assert ctx.stats.llm_calls == 3 == len(runtime.generator.calls)  # not the 5th passage
    assert ctx.stats.tokens_in > 0


def test_verified_diversify_drops_unparsable_replies_and_still_counts_their_cost():
    runtime = scripted_runtime(lambda messages: "no json here")
    ctx = runtime.context()
    out = VerifiedDiversify(k=1)({"question": LAMP, "passages": [DEMO["Kelp-oil lamp"]]}, ctx)
    assert out.interpretations == [] and out.unparsable == 1 and out.abstentions == 0
    assert ctx.stats.llm_calls == 3  # the first try and two parse retries


def test_interpret_cleans_caps_and_falls_back_to_the_question():
    raw = [" Who  won the cup in 2018? ", "who won the cup in 2018?", "", "Who won the cup",
           "Who designed the Velmora Bridge?", "Who won the cup in 2019?",
           "Who won the cup in 2022?"]
    assert clean_readings(raw, "Who won the cup?", limit=2, min_overlap=0.5) == [
        "Who won the cup in 2018?", "Who won the cup in 2019?"]
    runtime = scripted_runtime([{"interpretations": []}])
    assert Interpret()({"question": "Who won?"}, runtime.context()).interpretations == [
        "Who won?"]


def test_list_interpretations_answers_with_citations_or_abstains():
    items = [reading(LAMP, "Doran Vesk", "Kelp-oil lamp"),
             reading("Who identified blue kelp?", "Sera Ambrin", "Blue kelp")]
    out = ListInterpretations()({"interpretations": items})
    lamp, kelp = DEMO["Kelp-oil lamp"].id, DEMO["Blue kelp"].id
    assert out.answer.splitlines() == [f"1. {LAMP} Doran Vesk [{lamp}]",
                                       f"2. Who identified blue kelp? Sera Ambrin [{kelp}]"]
    assert out.citations == [lamp, kelp] and not out.abstained
    assert ListInterpretations(include_questions=False)(
        {"interpretations": items[:1]}).answer == f"1. Doran Vesk [{lamp}]"
    assert ListInterpretations()({"interpretations": []}).abstained


def test_interpretation_checks_keep_verified_and_judge_each_against_its_passage():
    items = [reading(LAMP, "Doran Vesk", "Kelp-oil lamp", verified=True),
             reading(LAMP, "Sera Ambrin", "Kelp-oil lamp", verified=False)]
    kept = KeepVerified()({"candidates": items})
    assert [i.answer for i in kept.interpretations] == ["Doran Vesk"] and kept.rejected == 1
    fresh = [i.model_copy(update={"verified": None}) for i in items]
    assert VerifyInterpretations(mode="disabled")({"interpretations": fresh}).interpretations \
        == fresh
    judged = VerifyInterpretations(mode="containment")({"interpretations": fresh})
    assert [i.verified for i in judged.interpretations] == [True, False]
    runtime = scripted_runtime([{"reason": "stated", "grounded": True},
                                {"reason": "not stated", "grounded": False}])
    ctx = runtime.context()
    by_llm = VerifyInterpretations(mode="llm")({"interpretations": fresh}, ctx)
    assert [i.verified for i in by_llm.interpretations] == [True, False]
    assert ctx.stats.llm_calls == 2
    assert all("[1] Kelp-oil lamp:" in m[-1].content and "[2]" not in m[-1].content
               for m in runtime.generator.calls)  # each judged on its own passage only


def test_verdict_graph_lists_consolidated_readings_with_citations(demo_index):
    runtime = scripted_runtime(diversify_reply, demo_index)
    state = load_graph("verdict", runtime=runtime).invoke(question=LAMP)
    lamp, lighthouse = DEMO["Kelp-oil lamp"].id, DEMO["Caskel Lighthouse"].id
    kept = [Interpretation.model_validate(i) for i in state["interpretations"]]
    assert kept and {i.passage.id for i in kept} <= {lamp, lighthouse}
    assert "Doran Vesk" in state["answer"] and set(state["citations"]) <= {lamp, lighthouse}
    assert state["answer"].startswith("1. ") and not state["abstained"]
    calls = {e["node"]: e["llm_calls"] for e in state["trace"]}
    assert calls["retrieve"] == 0 and calls["consolidate"] == 0 and calls["judge"] == 0
    assert calls["diversify"] == len(runtime.generator.calls) <= 5


DTV_ROLES = {"A question can be ambiguous": "interpret", "You answer questions": "answer",
             "You check answers": "verify"}


def dtv_reply(messages) -> dict:
    role = next(r for marker, r in DTV_ROLES.items() if marker in messages[0].content)
    if role == "interpret":
        return {"interpretations": [LAMP, "Who designed the Velmora Bridge?"]}
    if role == "answer":
        return {"answer": "Doran Vesk", "citations": [1]}
    grounded = "Velmora" not in messages[-1].content.split("Question:")[1]
    return {"reason": "checked", "grounded": grounded}


def test_dtv_graph_answers_and_verifies_each_reading_and_keeps_the_verified(demo_index):
    runtime = scripted_runtime(dtv_reply, demo_index)
    state = load_graph("dtv", runtime=runtime).invoke(
        question="Who invented the lamp or designed the bridge?")
    assert state["readings"] == [LAMP, "Who designed the Velmora Bridge?"]
    kept = [Interpretation.model_validate(i) for i in state["interpretations"]]
    assert [(i.question, i.answer, i.verified) for i in kept] == [(LAMP, "Doran Vesk", True)]
    assert state["rejected"] == 1
    assert state["answer"] == f"1. {LAMP} Doran Vesk [{kept[0].passage.id}]"
    assert len(runtime.generator.calls) == 1 + 2 * 2  # interpret, then answer + verify each
    assert [e["node"] for e in state["trace"]].count("retrieve") == 2


def record(prediction: str, interpretations=None, **extra) -> dict:
    base = {"prediction": prediction, "answers": [], "retrieved_ids": None, "gold_ids": [],
            "abstained": False, "error": None, "cited_texts": [],
            "qa_pairs": [{"short_answers": ["Doran Vesk"]}, {"short_answers": ["Sera Ambrin"]}],
            "outputs": {} if interpretations is None else {"interpretations": interpretations}}
    return {**base, **extra}


METRICS = ["n_interpretations", "grounded_precision", "grounded_precision_verify",
           "str_em_answers", "str_em"]


def test_ambiguity_metrics_score_each_interpretation_against_its_own_passage():
    items = [json.loads(reading(f"Q{i}?", answer, title, verified=verdict).model_dump_json())
             for i, (answer, title, verdict) in enumerate([
                 ("Doran Vesk", "Kelp-oil lamp", True), ("Doran Vesk", "Blue kelp", False),
                 ("Lene Malven", "Oskar Malven", None)])]
    scores = compute_metrics(record("1. Who found Sera Ambrin's kelp? Doran Vesk", items),
                             METRICS)
    assert scores["n_interpretations"] == 3
    assert scores["grounded_precision"] == pytest.approx(2 / 3)  # Vesk is not in Blue kelp
    assert scores["grounded_precision_verify"] == 0.5  # the unjudged one is left out
    assert scores["str_em_answers"] == 0.5 and scores["str_em"] == 1.0
    none = compute_metrics(record("unknown", [], abstained=True), METRICS)
    assert none["n_interpretations"] == 0 and none["grounded_precision"] is None
    assert none["grounded_precision_verify"] is None and none["str_em_answers"] == 0.0


def test_ambiguity_metrics_score_a_plain_answer_as_one_interpretation():
    plain = record("Doran Vesk", cited_texts=["Kelp-oil lamp invented by Doran Vesk"],
                   judge_grounded=False)
    scores = compute_metrics(plain, METRICS)
    assert scores["n_interpretations"] == 1 and scores["grounded_precision"] == 1.0
    assert scores["grounded_precision_verify"] == 0.0 and scores["str_em_answers"] == 0.5
    uncited = compute_metrics(record("Doran Vesk"), METRICS)
    assert uncited["grounded_precision"] == 0.0 and uncited["grounded_precision_verify"] is None
    abstained = compute_metrics(record("unknown", abstained=True), METRICS)
    assert abstained["n_interpretations"] == 0 and abstained["grounded_precision"] is None


ASQA = SHARED_DATA / "asqa" / "dev300.json"


@pytest.mark.skipif(not ASQA.exists(), reason=f"ASQA data not found at {ASQA}")
def test_asqa_loader_declares_the_ambiguity_metrics():
    data = load_asqa(ASQA)
    assert {"n_interpretations", "grounded_precision", "grounded_precision_verify",
            "str_em_answers"} <= set(data.metrics)
    assert all("qa_pairs" in q.meta for q in data.questions)

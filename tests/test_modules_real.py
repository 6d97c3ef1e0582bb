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


def test_decompose_real_model_returns_usable_plan(real_runtime):
    from compose.modules.decompose import Decompose

    ctx = real_runtime.context()
    out = Decompose(max_sub_questions=3)(
        {"question": "In which town was the designer of the Velmora Bridge born?"}, ctx)
    assert 1 <= len(out.sub_questions) <= 3
    assert all(q.strip() for q in out.sub_questions)
    assert ctx.stats.llm_calls >= 1


def test_construct_question_real_model_keeps_the_filled_entity(real_runtime):
    from compose.modules.construct import ConstructQuestion

    out = ConstructQuestion(use_llm=True)(
        {"sub_question": "Where was #1 born?",
         "previous": [{"question": "Who designed the Velmora Bridge?",
                       "answer": "Ilse Ranneth"}]}, real_runtime.context())
    assert len(out.question) >= 3 and out.unresolved == []


def test_retrieval_decision_real_model_parses(real_runtime):
    from compose.modules.retrieval_decision import RetrievalDecision

    ctx = real_runtime.context()
    out = RetrievalDecision()({"question": "Who designed the Velmora Bridge?"}, ctx)
    assert isinstance(out.retrieve, bool) and ctx.stats.llm_calls >= 1


def test_rewrite_query_real_model_retry(real_runtime):
    from compose.modules.rewrite import RewriteQuery

    ctx = real_runtime.context()
    out = RewriteQuery()({"question": "Where was Ilse Ranneth born?",
                          "failed_query": "Ilse", "failure_reason": "no birthplace found",
                          "queries": ["Ilse"]}, ctx)
    assert out.query and out.query != "Ilse" and out.queries[-1] == out.query
    assert ctx.stats.llm_calls >= 1


def test_verify_real_model_parses_a_verdict(real_runtime):
    from compose.modules.verify import Verify

    ctx = real_runtime.context()
    out = Verify()({"question": "Who invented the kelp-oil lamp?", "answer": "Doran Vesk",
                    "passages": demo_passages("Kelp-oil lamp")}, ctx)
    assert isinstance(out.grounded, bool) and ctx.stats.llm_calls >= 1


def test_synthesize_real_model_combines_hops(real_runtime):
    from compose.modules.hops import Hop
    from compose.modules.synthesize import Synthesize

    hops = [Hop(sub_question="Who designed the Velmora Bridge?", question="Who designed the "
                "Velmora Bridge?", answer="Ilse Ranneth", grounded=True, citations=["demo-025"]),
            Hop(sub_question="Where was #1 born?", question="Where was Ilse Ranneth born?",
                answer="Caskel", grounded=True, citations=["demo-023"])]
    ctx = real_runtime.context()
    out = Synthesize()({"question": "In which town was the designer of the Velmora Bridge "
                        "born?", "hops": hops}, ctx)
    assert out.answer and not out.abstained
    assert out.citations == ["demo-025", "demo-023"] and ctx.stats.llm_calls == 1


def test_answer_module_with_choices_answers_a_label(real_runtime):
    module = Answer(choices=["yes", "no", "maybe"])
    schema = module.emitted_model().model_json_schema()
    assert schema["properties"]["answer"]["enum"] == ["yes", "no", "maybe"]
    prompt = module.prompt.render(**module.prompt_fields(
        module.Input(question="Is the kelp-oil lamp visible from the sea?")))
    assert "exactly one of: yes, no, maybe" in prompt[0].content
    assert "unknown" not in prompt[0].content
    passages = demo_passages("Kelp-oil lamp", "Blue kelp")
    out = module({"question": "Is the kelp-oil lamp visible from the sea?",
                  "passages": passages}, real_runtime.context())
    assert out.answer in ("yes", "no", "maybe")
    assert set(out.citations) <= {p.id for p in passages}

"""ComposeRAG modules and graph: control flow with a scripted generator (placeholder filling,
retry budgets, re-planning, abstention), over the real demo index."""

from __future__ import annotations

from collections import Counter

from compose.api import load_graph
from compose.corpus import Passage
from compose.modules.construct import ConstructQuestion
from compose.modules.decompose import Decompose, clean_plan
from compose.modules.hops import Hop
from compose.modules.retrieval_decision import RetrievalDecision
from compose.modules.rewrite import RewriteQuery
from compose.modules.synthesize import Synthesize
from compose.modules.verify import Verify
from tests.conftest import scripted_runtime

ROLE_MARKERS = {
    "decompose": "split a question",
    "construct": "Rewrite the question so",
    "decide": "Decide if a search",
    "rewrite": "keyword search queries",
    "answer": "You answer questions with a short phrase",
    "verify": "You check answers",
    "synthesize": "facts that were already found",
}


# The LLM verifier, the LLM retrieval decision and facts synthesis: the seed configuration,
# still supported, whose retry loop these control-flow tests drive with scripted verdicts.
LLM_VERIFIER = ["nodes.verify.params.mode=llm", "nodes.synthesize.params.reader=facts",
                "nodes.synthesize.params.policy=abstain_if_final_ungrounded",
                "nodes.decide.params.always_retrieve=false"]


def role_of(messages) -> str:
    system = messages[0].content
    return next(role for role, marker in ROLE_MARKERS.items() if marker in system)


class Script:
    """Replies per module role; each role's list is consumed in order, the last repeats."""

    def __init__(self, **replies):
        self.replies = {role: list(r) if isinstance(r, list) else [r]
                        for role, r in replies.items()}
        self.seen: list[tuple[str, str]] = []

    def __call__(self, messages):
        role = role_of(messages)
        self.seen.append((role, messages[-1].content))
        queue = self.replies[role]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def count(self, role: str) -> int:
        return sum(1 for r, _ in self.seen if r == role)


def ctx_for(script):
    return scripted_runtime(script).context()


def test_clean_plan_drops_forward_references_duplicates_and_caps():
    plan = clean_plan(["Who built X?", "Who built X?", "Where was #2 born?", "When was #1 born?",
                       "  ", "Extra?"], "Q?", limit=2, offset=0)
    assert plan == ["Who built X?", "When was #1 born?"]
    assert clean_plan([], "Q?", limit=3, offset=0) == ["Q?"]


def test_decompose_disabled_makes_no_call():
    script = Script()
    ctx = ctx_for(script)
    out = Decompose(enabled=False)({"question": "Q?"}, ctx)
    assert out.sub_questions == ["Q?"] and ctx.stats.llm_calls == 0


def test_decompose_replans_only_the_remaining_hops():
    script = Script(decompose={"sub_questions": ["Where was #1 born?"]})
    ctx = ctx_for(script)
    out = Decompose()({"question": "Where was the X designer born?",
                       "answered": [{"question": "Who designed X?", "answer": "Ilse"}]}, ctx)
    assert out.sub_questions == ["Who designed X?", "Where was #1 born?"]
    assert "Already answered" in script.seen[0][1] and "-> Ilse" in script.seen[0][1]


def test_construct_fills_placeholders_without_llm():
    ctx = ctx_for(Script())
    out = ConstructQuestion()({"sub_question": "Where was #1 born, and #3?",
                               "previous": [{"question": "Who?", "answer": "Ilse Ranneth"}]},
                              ctx)
    assert out.question == "Where was Ilse Ranneth born, and #3?"
    assert out.unresolved == [3] and ctx.stats.llm_calls == 0


def test_construct_with_llm_rewrites_filled_question():
    script = Script(construct={"question": "Where was Ilse Ranneth born?"})
    out = ConstructQuestion(use_llm=True)(
        {"sub_question": "Where was she born?",
         "previous": [{"question": "Who designed it?", "answer": "Ilse Ranneth"}]},
        ctx_for(script))
    assert out.question == "Where was Ilse Ranneth born?"
    assert "Who designed it? Ilse Ranneth" in script.seen[0][1]


def test_retrieval_decision_ablation_and_llm_path():
    ctx = ctx_for(Script())
    assert RetrievalDecision(always_retrieve=True)({"question": "Q?"}, ctx).retrieve
    assert ctx.stats.llm_calls == 0
    script = Script(decide={"reason": "known fact", "retrieve": False})
    out = RetrievalDecision()({"question": "Q?", "evidence": [
        {"question": "Who?", "answer": "Ilse"}]}, ctx_for(script))
    assert out.retrieve is False and "- Who? Ilse" in script.seen[0][1]


def test_rewrite_first_query_is_the_question_and_retry_uses_the_reason():
    script = Script(rewrite={"query": "Ranneth birthplace"})
    ctx = ctx_for(script)
    first = RewriteQuery()({"question": "Where was Ilse Ranneth born?"}, ctx)
    assert first.query == "Where was Ilse Ranneth born?" and ctx.stats.llm_calls == 0
    retry = RewriteQuery()({"question": "Where was Ilse Ranneth born?",
                            "failed_query": first.query, "failure_reason": "no birthplace",
                            "queries": first.queries}, ctx)
    assert retry.query == "Ranneth birthplace"
    assert retry.queries == [first.query, "Ranneth birthplace"]
    assert "did not work: no birthplace" in script.seen[0][1]


def test_rewrite_never_repeats_a_query():
    script = Script(rewrite={"query": "same"})
    out = RewriteQuery()({"question": "Q?", "failed_query": "same", "queries": ["same"]},
                         ctx_for(script))
    assert out.query != "same"


def test_verify_modes():
    ctx = ctx_for(Script())
    passages = [{"id": "p", "title": "Ilse Ranneth", "text": "born in the port town of Caskel"}]
    assert not Verify()({"question": "Q", "answer": "unknown", "passages": passages}, ctx).grounded
    assert Verify(mode="disabled")({"question": "Q", "answer": "unknown"}, ctx).grounded
    assert Verify(mode="containment")({"question": "Q", "answer": "caskel.",
                                       "passages": passages}, ctx).grounded
    assert not Verify(mode="containment")({"question": "Q", "answer": "Tarrow",
                                           "passages": passages}, ctx).grounded
    assert ctx.stats.llm_calls == 0
    script = Script(verify={"reason": "passage says Caskel", "grounded": True})
    assert Verify()({"question": "Q", "answer": "Caskel", "passages": passages},
                    ctx_for(script)).grounded


def hop(answer: str, grounded: bool, cite: str = "p1") -> Hop:
    return Hop(sub_question="s", question="q", answer=answer, grounded=grounded,
               citations=[cite])


def test_synthesize_policies():
    ctx = ctx_for(Script(synthesize={"answer": "Caskel"}))
    single = Synthesize()({"question": "Q", "hops": [hop("Caskel", True)]}, ctx)
    assert single.answer == "Caskel" and ctx.stats.llm_calls == 0
    two = Synthesize()({"question": "Q", "hops": [hop("Ilse", False), hop("Caskel", True,
                                                                         "p2")]}, ctx)
    assert two.answer == "Caskel" and not two.abstained and two.ungrounded_hops == [1]
    assert two.citations == ["p2"]
    strict = Synthesize(policy="abstain_if_any_ungrounded")(
        {"question": "Q", "hops": [hop("Ilse", False), hop("Caskel", True)]}, ctx)
    assert strict.abstained and strict.answer == "unknown"
    final = Synthesize()({"question": "Q", "hops": [hop("Ilse", True), hop("?", False)]}, ctx)
    assert final.abstained


def test_synthesize_reader_passages_reads_the_question_over_hop_evidence():
    script = Script(answer={"answer": "Caskel", "citations": [2]})
    ctx = ctx_for(script)
    first = Passage(id="p1", title="Velmora Bridge", text="Designed by Ilse Brandt.")
    second = Passage(id="p2", title="Ilse Brandt", text="Ilse Brandt was born in Caskel.")
    hops = [Hop(sub_question="s1", question="Who designed the Velmora Bridge?", answer="Ilse",
                grounded=True, citations=["p1"], passages=[first]),
            Hop(sub_question="s2", question="Where was Ilse born?", answer="Caskel",
                grounded=False, citations=["p2"], passages=[second, first])]
    out = Synthesize(reader="passages", policy="never")(
        {"question": "Where was the Velmora Bridge's designer born?", "hops": hops}, ctx)
    assert (out.answer, out.citations, out.abstained) == ("Caskel", ["p2"], False)
    assert out.ungrounded_hops == [2]
    role, prompt = script.seen[-1]
    assert role == "answer" and "Velmora Bridge's designer" in prompt
    assert prompt.index("[1] Velmora Bridge") < prompt.index("[2] Ilse Brandt")
    assert prompt.count("Designed by Ilse Brandt") == 1
    unknown = Synthesize(reader="passages", policy="never")(
        {"question": "Who paid for it?", "hops": hops},
        ctx_for(Script(answer={"answer": "unknown", "citations": []})))
    assert unknown.abstained and unknown.answer == "unknown"


def test_synthesize_reads_question_passages_after_the_hop_evidence():
    script = Script(answer={"answer": "Caskel", "citations": [3]})
    hop_passage = Passage(id="p1", title="Velmora Bridge", text="Designed by Ilse Brandt.")
    question_passages = [hop_passage.model_copy(),
                         Passage(id="p9", title="Aubeth River", text="A river."),
                         Passage(id="p2", title="Ilse Brandt", text="Born in Caskel."),
                         Passage(id="p7", title="Kestrevia", text="A country.")]
    hops = [Hop(sub_question="s1", question="Who designed the Velmora Bridge?", answer="Ilse",
                grounded=True, citations=["p1"], passages=[hop_passage]),
            Hop(sub_question="s2", question="Where was Ilse born?", answer="?",
                grounded=False, citations=[], passages=[])]
    out = Synthesize(reader="passages", policy="never", question_passages=3)(
        {"question": "Where was the designer born?", "hops": hops,
         "question_passages": question_passages}, ctx_for(script))
    prompt = script.seen[-1][1]
    assert prompt.count("Designed by Ilse Brandt") == 1
    assert prompt.index("[1] Velmora Bridge") < prompt.index("[2] Aubeth River") < prompt.index(
        "[3] Ilse Brandt")
    assert "Kestrevia" not in prompt
    assert out.citations == ["p2"] and out.answer == "Caskel"
    unread = Script(answer={"answer": "Caskel", "citations": [1]})
    Synthesize(reader="passages", policy="never")(
        {"question": "Where was the designer born?", "hops": hops,
         "question_passages": question_passages}, ctx_for(unread))
    assert "Aubeth River" not in unread.seen[-1][1]



def test_synthesize_can_read_question_passages_before_the_hop_evidence():
    """With question_passages_first the reader sees what naive RAG would read first, then the
    hops' bridge passages it lacked; max_passages cuts from the end of that order."""
    script = Script(answer={"answer": "Caskel", "citations": [3]})
    question_passages = [Passage(id="p9", title="Aubeth River", text="A river."),
                         Passage(id="p1", title="Velmora Bridge", text="Designed by Ilse."),
                         Passage(id="p7", title="Kestrevia", text="A country.")]
    hops = [Hop(sub_question="s1", question="Who designed the Velmora Bridge?", answer="Ilse",
                grounded=True, citations=["p1"], passages=[question_passages[1].model_copy()]),
            Hop(sub_question="s2", question="Where was Ilse born?", answer="Caskel",
                grounded=True, citations=["p2"],
                passages=[Passage(id="p2", title="Ilse Brandt", text="Born in Caskel."),
                          Passage(id="p5", title="Ilse Wend", text="A painter.")])]
    out = Synthesize(reader="passages", policy="never", question_passages=2, max_passages=3,
                     question_passages_first=True, single_hop_shortcut=False)(
        {"question": "Where was the designer born?", "hops": hops,
         "question_passages": question_passages}, ctx_for(script))
    prompt = script.seen[-1][1]
    assert prompt.index("[1] Aubeth River") < prompt.index("[2] Velmora Bridge") < prompt.index(
        "[3] Ilse Brandt")
    assert prompt.count("Designed by Ilse") == 1
    assert "Kestrevia" not in prompt and "Ilse Wend" not in prompt
    assert out.citations == ["p2"] and out.answer == "Caskel"
    one_hop = Script(answer={"answer": "Ilse", "citations": [2]})
    read = Synthesize(reader="passages", policy="never", question_passages=2,
                      question_passages_first=True, single_hop_shortcut=False)(
        {"question": "Who designed it?", "hops": hops[:1],
         "question_passages": question_passages}, ctx_for(one_hop))
    assert one_hop.seen and read.citations == ["p1"]

def test_two_hop_chain_fills_placeholder_from_first_answer(demo_index):
    script = Script(
        decompose={"sub_questions": ["Who designed the Velmora Bridge?", "Where was #1 born?"]},
        decide={"reason": "need facts", "retrieve": True},
        answer=[{"answer": "Ilse Ranneth", "citations": [1]},
                {"answer": "Caskel", "citations": [1]}],
        verify={"reason": "stated", "grounded": True},
        synthesize={"answer": "Caskel"},
    )
    runtime = scripted_runtime(script, demo_index)
    state = load_graph("compose_rag", runtime=runtime, overrides=LLM_VERIFIER).invoke(
        question="In which town was the designer of the Velmora Bridge born?")
    assert [h["question"] for h in state["hops"]] == [
        "Who designed the Velmora Bridge?", "Where was Ilse Ranneth born?"]
    assert state["answer"] == "Caskel" and not state["abstained"]
    assert state["citations"] and all(c.startswith("demo-") for c in state["citations"])
    retrieves = [e for e in state["trace"] if e["node"] == "retrieve"]
    assert retrieves[1]["input"]["query"] == "Where was Ilse Ranneth born?"
    assert Counter(role for role, _ in script.seen) == Counter(
        decompose=1, decide=2, answer=2, verify=2, synthesize=1)


def test_default_chain_verifies_by_containment_and_reads_question_then_hop_evidence(demo_index):
    script = Script(
        decompose={"sub_questions": ["Who designed the Velmora Bridge?", "Where was #1 born?"]},
        rewrite={"query": "unused"},
        answer=[{"answer": "Ilse Ranneth", "citations": [1]},
                {"answer": "Caskel", "citations": [1]},
                {"answer": "Caskel", "citations": [2]}],
    )
    runtime = scripted_runtime(script, demo_index)
    state = load_graph("compose_rag", runtime=runtime).invoke(
        question="In which town was the designer of the Velmora Bridge born?")
    hops = state["hops"]
    assert [h["grounded"] for h in hops] == [
        any("ranneth" in p["text"].lower() for p in hops[0]["passages"]),
        any("caskel" in p["text"].lower() for p in hops[1]["passages"])]
    # always_retrieve: the retrieval decision costs no call (it did not earn one, README).
    assert Counter(role for role, _ in script.seen) == Counter(decompose=1, answer=3)
    final_prompt = script.seen[-1][1]
    assert "designer of the Velmora Bridge born" in final_prompt
    assert hops[0]["passages"][0]["title"] in final_prompt
    assert state["answer"] == "Caskel" and not state["abstained"]
    # The reader reads what one retrieval for the question found, then the hops' evidence.
    read = list(dict.fromkeys([*(p["id"] for p in state["question_passages"][:5]),
                               *(p["id"] for h in hops for p in h["passages"])]))[:8]
    assert state["citations"] == [read[1]]
    assert final_prompt.index(state["question_passages"][0]["text"][:40]) < final_prompt.index(
        "Question:")


def test_always_failing_verifier_terminates_within_budget(demo_index):
    script = Script(
        decompose={"sub_questions": ["Who designed the Velmora Bridge?"]},
        decide={"reason": "need facts", "retrieve": True},
        rewrite={"query": "Velmora designer"},
        answer={"answer": "Ilse Ranneth", "citations": [1]},
        verify={"reason": "not supported", "grounded": False},
    )
    runtime = scripted_runtime(script, demo_index)
    state = load_graph("compose_rag", runtime=runtime, overrides=LLM_VERIFIER).invoke(
        question="Who designed it?")
    # hop 1: first try + 2 retries, re-plan once (same sub-question, budget already spent per
    # sub-question), then the hop is recorded ungrounded and synthesis abstains.
    assert script.count("verify") == 4
    assert script.count("decompose") == 2
    assert len(state["hops"]) == 1 and state["hops"][0]["grounded"] is False
    assert state["abstained"] and state["answer"] == "unknown"
    assert state["ungrounded_hops"] == [1]
    queries = state["hops"][0]["queries"]
    assert len(queries) == len(set(queries))


def test_verification_off_ablation_makes_no_retries(demo_index):
    script = Script(
        decompose={"sub_questions": ["Who designed the Velmora Bridge?"]},
        decide={"reason": "need facts", "retrieve": True},
        answer={"answer": "Ilse Ranneth", "citations": [1]},
    )
    runtime = scripted_runtime(script, demo_index)
    graph = load_graph("compose_rag", runtime=runtime,
                       overrides=["nodes.verify.params.mode=disabled"])
    state = graph.invoke(question="Who designed the Velmora Bridge?")
    assert state["answer"] == "Ilse Ranneth" and "verify" not in {r for r, _ in script.seen}


def test_iterative_baseline_accumulates_evidence_and_stops_at_budget(demo_index):
    script = Script(
        answer=[{"answer": "unknown", "citations": []}] * 2 + [
            {"answer": "Caskel", "citations": [7]}],
        rewrite=[{"query": "Ilse Ranneth birthplace"}, {"query": "Ranneth born port town"}],
    )
    runtime = scripted_runtime(script, demo_index)
    state = load_graph("iterative_rag", runtime=runtime).invoke(
        question="In which town was the designer of the Velmora Bridge born?")
    assert script.count("answer") == 3 and script.count("rewrite") == 2
    assert len(state["passages"]) == 15
    assert state["answer"] == "Caskel"
    assert state["citations"] == [state["passages"][6]["id"]]


def test_iterative_baseline_gives_up_after_two_extra_rounds(demo_index):
    script = Script(answer={"answer": "unknown", "citations": []},
                    rewrite=[{"query": f"query {i}"} for i in range(5)])
    runtime = scripted_runtime(script, demo_index)
    state = load_graph("iterative_rag", runtime=runtime).invoke(question="Unanswerable?")
    assert script.count("answer") == 3 and state["answer"] == "unknown"


def test_trace_tree_shows_hops_retries_and_verdicts(demo_index, tmp_path):
    from rich.console import Console

    from compose.cli.trace_view import read_trace, trace_tree
    from compose.trace import write_trace

    script = Script(
        decompose={"sub_questions": ["Who designed the Velmora Bridge?"]},
        decide={"reason": "need facts", "retrieve": True},
        rewrite=[{"query": "Velmora designer"}, {"query": "bridge engineer Velmora"}],
        answer={"answer": "Ilse Ranneth", "citations": [1]},
        verify={"reason": "not supported", "grounded": False},
    )
    state = load_graph("compose_rag", runtime=scripted_runtime(script, demo_index),
                       overrides=LLM_VERIFIER).invoke(question="Who designed it?")
    path = tmp_path / "trace.jsonl"
    write_trace(path, state["trace"])
    console = Console(record=True, width=200)
    console.print(trace_tree(*reversed(read_trace(path))))
    text = console.export_text()
    assert "hop 1: Who designed the Velmora Bridge?" in text
    assert "retry 1" in text and "retry 2" in text
    assert "query: Velmora designer" in text and "not grounded: not supported" in text
    assert "abstained" in text

"""The trace view's per-node lines: each module summarises its own output
(``Module.trace_summary``); a module without a summary, or one not installed, gets its
output as JSON. The expected lines are those the table of module names gave, which the hooks
replaced."""

from __future__ import annotations

import pytest

from compose.cli.trace_view import summarize_event

P = [{"id": "d-1", "title": "Velmora [Bridge]"}, {"id": "d-2", "title": ""}]
CALL = {"name": "bmi", "arguments": {"kg": 68}}

CASES = [
    ("retrieve", {"passages": P}, "retrieved: Velmora [Bridge]; d-2"),
    ("retrieve", {"passages": []}, "retrieved nothing"),
    ("answer", {"answer": "Ilse [b]Ranneth", "citations": ["d-1"]},
     "answer: [bold]Ilse \\[b]Ranneth[/] cites ['d-1']"),
    ("verify", {"grounded": True, "reason": "stated in [1]"},
     "[green]grounded[/]: stated in [1]"),
    ("verify", {"grounded": False, "reason": "absent"}, "[red]not grounded[/]: absent"),
    ("decompose", {"sub_questions": ["Who built [it]?", "When?"]},
     "sub-questions: Who built \\[it]? | When?"),
    ("construct_question", {"question": "Where did [X] live?"},
     "question: Where did [X] live?"),
    ("retrieval_decision", {"retrieve": True, "reason": "needs facts"},
     "retrieve: needs facts"),
    ("retrieval_decision", {"retrieve": False, "reason": "known"}, "no retrieval: known"),
    ("rewrite_query", {"query": "kelp [oil] lamp"}, "query: kelp \\[oil] lamp"),
    ("synthesize", {"answer": "Caskel", "abstained": False, "citations": ["d-2"]},
     "final answer: [bold]Caskel[/] cites ['d-2']"),
    ("synthesize", {"answer": "unknown", "abstained": True, "citations": []},
     "[yellow]abstained[/] cites []"),
    ("agent_step", {"decision": {"thought": "look [up]", "answer": None, "call": CALL}},
     'thought: look \\[up] -> calls [bold]bmi[/] {"kg": 68}'),
    ("agent_step", {"decision": {"thought": "done", "answer": "yes", "call": None}},
     "thought: done -> answers [bold]yes[/]"),
    ("agent_step", {"decision": {"thought": "", "answer": None, "call": None,
                                 "error": "not valid JSON"}},
     "thought:  -> [red]unreadable output[/]: not valid JSON"),
    ("execute_tool", {"steps": [{"answer": "no"}]}, "final answer: [bold]no[/]"),
    ("execute_tool", {"steps": [{"tool": "bmi", "latency_s": 0.5, "error": "bad [x]"}]},
     "[red]bmi failed[/] in 0.50 s: bad \\[x]"),
    ("execute_tool", {"steps": [{"tool": "bmi", "latency_s": 0.25, "result": "25.0"}]},
     "[green]bmi[/] in 0.25 s: 25.0"),
    ("execute_tool", {"steps": []}, "[green](no call)[/] in 0.00 s: "),
    ("moi_rerank", {"passages": P, "trials": []}, "order: Velmora [Bridge]; d-2"),
    ("moi_rerank", {"passages": P, "trials": [{}, {}], "voted": True,
                    "vote_answer": "Ran[neth]"},
     "voted [bold]Ran\\[neth][/] over 2 orders"),
    ("moi_rerank", {"passages": P, "trials": [{}, {}, {}], "tokens_evaluated": 40,
                    "tokens_prompted": 100},
     "re-ranked after 3 orders (40 of 100 prompt tokens evaluated): Velmora [Bridge]; d-2"),
    ("next_hop", {"hop_index": 0, "sub_question": "Who [built] it?", "done": False},
     '{"hop_index": 0, "sub_question": "Who \\[built] it?", "done": false}'),
    ("no_such_module", {"x": "[y]"}, '{"x": "\\[y]"}'),
]


@pytest.mark.parametrize(("module", "output", "summary"), CASES)
def test_each_module_summarises_its_own_output(module, output, summary):
    event = {"node": "n", "module": module, "output": output, "latency_s": 0.125,
             "llm_calls": 1}
    assert summarize_event(event) == f"[cyan]n[/] {summary} [dim](0.12 s, 1 LLM)"


def test_a_cached_event_says_so():
    event = {"node": "n", "module": "rewrite_query", "output": {"query": "q"},
             "cache_hit": True}
    assert summarize_event(event) == "[cyan]n[/] query: q [dim](0.00 s, 0 LLM, cached)"

"""Render a run's trace as a readable tree: sub-questions, queries, retrieved titles,
answers, verdicts and retries - the audit view of a multi-hop or agent run.

Events before the first ``next_hop`` sit at the root; each ``next_hop`` opens a hop; a
``rewrite_query`` after a ``verify`` in the same hop opens a retry. In agent runs each
``agent_step`` opens a step holding its thought and action and the ``execute_tool`` outcome
(result or error, latency).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rich.markup import escape
from rich.tree import Tree


def _passages(out: dict) -> str:
    titles = [f"{p.get('title') or p['id']}" for p in out.get("passages", [])]
    return "retrieved: " + "; ".join(titles) if titles else "retrieved nothing"


def _verdict(out: dict) -> str:
    mark = "[green]grounded[/]" if out.get("grounded") else "[red]not grounded[/]"
    return f"{mark}: {escape(str(out.get('reason', '')))}"


def _agent_decision(out: dict) -> str:
    decision = out.get("decision") or {}
    thought = f"thought: {escape(decision.get('thought') or '')}"
    if decision.get("answer") is not None:
        return f"{thought} -> answers [bold]{escape(decision['answer'])}[/]"
    call = decision.get("call")
    if call:
        args = escape(json.dumps(call.get("arguments") or {}, ensure_ascii=False)[:160])
        return f"{thought} -> calls [bold]{escape(call['name'])}[/] {args}"
    return f"{thought} -> [red]unreadable output[/]: {escape(decision.get('error') or '')}"


def _tool_step(out: dict) -> str:
    step = (out.get("steps") or [{}])[-1]
    if step.get("answer") is not None:
        return f"final answer: [bold]{escape(step['answer'])}[/]"
    name = escape(step.get("tool") or "(no call)")
    timing = f" in {step.get('latency_s', 0):.2f} s"
    if step.get("error"):
        return f"[red]{name} failed[/]{timing}: {escape(step['error'][:200])}"
    return f"[green]{name}[/]{timing}: {escape((step.get('result') or '')[:200])}"


def _rerank(out: dict) -> str:
    order = "; ".join(escape(p.get("title") or p["id"]) for p in out.get("passages", []))
    trials = out.get("trials") or []
    if out.get("voted"):
        return f"voted [bold]{escape(out.get('vote_answer', ''))}[/] over {len(trials)} orders"
    if not trials:
        return f"order: {order}"
    return (f"re-ranked after {len(trials)} orders ({out.get('tokens_evaluated', 0)} of "
            f"{out.get('tokens_prompted', 0)} prompt tokens evaluated): {order}")


SUMMARIES: dict[str, Callable[[dict], str]] = {
    "moi_rerank": _rerank,
    "agent_step": _agent_decision,
    "execute_tool": _tool_step,
    "decompose": lambda o: "sub-questions: " + " | ".join(map(escape, o["sub_questions"])),
    "construct_question": lambda o: f"question: {escape(o['question'])}",
    "retrieval_decision": lambda o: ("retrieve" if o["retrieve"] else "no retrieval")
    + f": {escape(o.get('reason', ''))}",
    "rewrite_query": lambda o: f"query: {escape(o['query'])}",
    "retrieve": _passages,
    "answer": lambda o: f"answer: [bold]{escape(o['answer'])}[/] cites {o.get('citations')}",
    "verify": _verdict,
    "synthesize": lambda o: ("[yellow]abstained[/]" if o.get("abstained") else
                             f"final answer: [bold]{escape(o['answer'])}[/]")
    + f" cites {o.get('citations')}",
}


def summarize_event(event: dict) -> str:
    module = event.get("module", "?")
    output = event.get("output") or {}
    text = SUMMARIES[module](output) if module in SUMMARIES else escape(
        json.dumps(output, ensure_ascii=False)[:160])
    cost = f" [dim]({event.get('latency_s', 0):.2f} s, {event.get('llm_calls', 0)} LLM"
    cost += ", cached)" if event.get("cache_hit") else ")"
    return f"[cyan]{escape(event['node'])}[/] {text}{cost}"


def trace_tree(events: list[dict], title: str = "run") -> Tree:
    root = Tree(f"[bold]{escape(title)}[/]")
    hop: Tree | None = None
    branch: Tree | None = None
    retries = steps = 0
    seen_verify = False
    for event in events:
        module = event.get("module")
        if module == "next_hop":
            output = event.get("output") or {}
            if output.get("done"):
                hop = branch = None
                continue
            hop = root.add(f"[bold]hop {output['hop_index'] + 1}[/]: "
                           f"{escape(output.get('sub_question', ''))}")
            branch, retries, seen_verify = hop, 0, False
            continue
        if module == "record_hop":
            continue
        if module == "agent_step":
            steps += 1
            branch = root.add(f"[bold]step {steps}[/]")
        if module == "rewrite_query" and seen_verify and hop is not None:
            retries += 1
            branch = hop.add(f"[yellow]retry {retries}[/]")
        if module == "verify":
            seen_verify = True
        (branch or root).add(summarize_event(event))
    return root


def read_trace(path: str | Path, run_id: str | None = None) -> tuple[str, list[dict]]:
    """A trace JSONL (one event a line), or an eval traces file (one ``{id, trace}`` a line)
    from which ``run_id`` (default: the first) is picked."""
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if lines and "trace" in lines[0]:
        chosen = next((r for r in lines if run_id in (None, r["id"])), None)
        if chosen is None:
            raise KeyError(f"no run with id {run_id!r} in {path}")
        return f"{chosen['id']}: {chosen.get('question', '')}", chosen["trace"]
    return str(path), lines

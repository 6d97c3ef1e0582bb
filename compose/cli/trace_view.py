"""Render a run's trace as a readable tree: sub-questions, queries, retrieved titles,
answers, verdicts and retries - the audit view of a multi-hop or agent run.

Events before the first ``next_hop`` sit at the root; each ``next_hop`` opens a hop; a
``rewrite_query`` after a ``verify`` in the same hop opens a retry. In agent runs each
``agent_step`` opens a step holding its thought and action and the ``execute_tool`` outcome
(result or error, latency). Each node's line is its module's own summary of its output
(:meth:`compose.module.Module.trace_summary`), found in the registry by the module name the
trace recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.tree import Tree

from compose.registry import get_module


def _module_summary(module: str, output: dict[str, Any]) -> str | None:
    """The module's own summary of its output (``Module.trace_summary``); None for a module
    without one, or one not installed here (a trace can come from another machine)."""
    try:
        module_cls = get_module(module)
    except KeyError:
        return None
    return module_cls.trace_summary(output)


def summarize_event(event: dict[str, Any]) -> str:
    output = event.get("output") or {}
    text = _module_summary(event.get("module", "?"), output)
    if text is None:
        text = escape(json.dumps(output, ensure_ascii=False)[:160])
    cost = f" [dim]({event.get('latency_s', 0):.2f} s, {event.get('llm_calls', 0)} LLM"
    cost += ", cached)" if event.get("cache_hit") else ")"
    return f"[cyan]{escape(event['node'])}[/] {text}{cost}"


def trace_tree(events: list[dict[str, Any]], title: str = "run") -> Tree:
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


def read_trace(path: str | Path, run_id: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """A trace JSONL (one event a line), or an eval traces file (one ``{id, trace}`` a line)
    from which ``run_id`` (default: the first) is picked."""
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if lines and "trace" in lines[0]:
        chosen = next((r for r in lines if run_id in (None, r["id"])), None)
        if chosen is None:
            raise KeyError(f"no run with id {run_id!r} in {path}")
        return f"{chosen['id']}: {chosen.get('question', '')}", chosen["trace"]
    return str(path), lines

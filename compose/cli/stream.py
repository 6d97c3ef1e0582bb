"""``composerag run --stream``: a run whose answer appears in the terminal as it is generated.

Node progress goes to stderr as dim lines; the answer's tokens go to stdout (or wherever
``tokens_to`` says: ``--json`` keeps stdout for the JSON) as they arrive. A ``token_reset``
(the answer node ran again, or retried its reply) ends the line and starts the answer over on
a new one, since a terminal cannot take printed text back. The run's final state is returned,
so the caller prints the outputs as a plain ``run`` does.

llama-cpp-python silences a model load by pointing stdout and stderr (the file descriptors)
at /dev/null, and ``composerag run`` loads the model on a prefetch thread while the graph
starts; a progress line printed meanwhile would be lost, so a graph that prompts a model
waits for it before the run starts.

Usage::

    state = run_streaming(compiled, {"question": "Who invented the kelp-oil lamp?"})
    print_outputs(compiled, state, as_json=False)
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from compose.api import ComposeGraph
from compose.module import LLMModule
from compose.registry import get_module


def run_streaming(compiled: ComposeGraph, inputs: dict[str, Any], *,
                  tokens_to: TextIO | None = None,
                  progress: Console | None = None) -> dict[str, Any]:
    """Run ``compiled`` on ``inputs``, showing progress and the answer's tokens live; return
    the final state (outputs plus ``trace``)."""
    if any(issubclass(get_module(node.module), LLMModule)
           for node in compiled.spec.nodes.values()):
        compiled.runtime.generator  # noqa: B018 - loaded before anything is printed
    tokens_to = tokens_to or sys.stdout
    progress = progress or Console(stderr=True, highlight=False)
    final: dict[str, Any] = {}
    open_line = False  # answer text printed since the last newline

    def end_line() -> None:
        nonlocal open_line
        if open_line:
            tokens_to.write("\n")
            tokens_to.flush()
            open_line = False

    for mode, item in compiled.stream(inputs, stream_mode=["tokens", "values"]):
        if mode == "values":
            final = item
        elif item["event"] == "token":
            tokens_to.write(item["text"])
            tokens_to.flush()
            open_line = True
        elif item["event"] == "token_reset":
            end_line()
            progress.print(f"[dim]{escape(item['node'])}: answer restarted[/]")
        else:
            end_line()
            progress.print(f"[dim]{_progress_line(item['node'], item['update'])}[/]")
    end_line()
    return final


def _progress_line(node: str, update: dict[str, Any] | None) -> str:
    """``node answer: 1.84 s, 1 LLM call`` from the node's trace event."""
    events = (update or {}).get("trace") or []
    if not events:
        return f"node {escape(node)}"
    event = events[-1]
    calls = event.get("llm_calls", 0)
    cost = f", {calls} LLM call{'s' if calls != 1 else ''}" if calls else ""
    cached = ", cached" if event.get("cache_hit") else ""
    return f"node {escape(node)}: {event.get('latency_s', 0.0):.2f} s{cost}{cached}"

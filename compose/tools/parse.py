"""The agent's decision format: its JSON schema (for constrained decoding) and its parser.

Each agent step emits one JSON object, either a tool call or a final answer::

    {"thought": "...", "tool": "evidence_search", "arguments": {"query": "..."}}
    {"thought": "...", "final_answer": "yes"}

:func:`decision_schema` builds the schema as a union over the *allowed* tools only, each with
its own argument schema, so a backend that constrains decoding cannot even emit a tool outside
the allow-list. :func:`parse_decision` reads raw model text and never raises: anything it
cannot read becomes a :class:`Decision` with ``error`` set, which the executor turns into an
observation. Whether the named tool is allowed and the arguments valid is checked again at
execution, so backends that cannot constrain decoding get the same guarantees.

Usage::

    from compose.tools.parse import parse_decision
    decision = parse_decision('{"thought": "t", "final_answer": "Yes"}', choices=["yes", "no"])
    decision.answer  # "yes"
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from compose.structured import extract_json
from compose.text import choice_label
from compose.tools.execute import ToolCall
from compose.tools.registry import get_tool

MAX_THOUGHT_CHARS = 200
MAX_FREE_ANSWER_CHARS = 80


class Decision(BaseModel):
    """One parsed agent step: a call, a final answer, or an error saying why neither."""

    thought: str = ""
    call: ToolCall | None = None
    answer: str | None = None
    error: str | None = None
    raw: str = ""


def _final_schema(choices: Sequence[str] | None) -> dict[str, Any]:
    answer: dict[str, Any] = ({"type": "string", "enum": list(choices)} if choices else
                              {"type": "string", "maxLength": MAX_FREE_ANSWER_CHARS})
    return {
        "type": "object",
        "properties": {"thought": {"type": "string", "maxLength": MAX_THOUGHT_CHARS},
                       "final_answer": answer},
        "required": ["thought", "final_answer"],
        "additionalProperties": False,
    }


def decision_schema(tools: Sequence[str], choices: Sequence[str] | None = None, *,
                    final_only: bool = False) -> dict[str, Any]:
    """JSON schema of one step: any allowed tool with its arguments, or the final answer.
    Argument models' ``$defs`` are hoisted to the root, where their ``$ref``s point."""
    options: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for name in [] if final_only else tools:
        args = dict(get_tool(name).args_schema())
        defs.update(args.pop("$defs", {}))
        options.append({
            "type": "object",
            "properties": {"thought": {"type": "string", "maxLength": MAX_THOUGHT_CHARS},
                           "tool": {"type": "string", "enum": [name]},
                           "arguments": args},
            "required": ["thought", "tool", "arguments"],
            "additionalProperties": False,
        })
    options.append(_final_schema(choices))
    schema: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "$defs": defs} if defs else schema


def _read_json(raw: str) -> dict[str, Any] | str:
    try:
        data = json.loads(extract_json(raw), strict=False)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        return f"output is not valid JSON ({type(exc).__name__})"
    if not isinstance(data, dict):
        return f"output must be a JSON object, got {type(data).__name__}"
    return data


def parse_decision(raw: str, choices: Sequence[str] | None = None) -> Decision:
    """Read one raw model output. Never raises; failures come back with ``error`` set."""
    data = _read_json(raw)
    if isinstance(data, str):
        return Decision(error=data, raw=raw)
    thought = data.get("thought", "")
    thought = (thought if isinstance(thought, str) else json.dumps(thought))[:MAX_THOUGHT_CHARS]
    has_final, has_tool = "final_answer" in data, "tool" in data
    if has_final and has_tool:
        return Decision(thought=thought, raw=raw,
                        error="give either a tool call or a final_answer, not both")
    if has_final:
        answer = data["final_answer"]
        if not isinstance(answer, str) or not answer.strip():
            return Decision(thought=thought, raw=raw, error="final_answer must be a non-empty "
                            "string")
        if choices:
            chosen = choice_label(answer, choices)
            if chosen is None:
                return Decision(thought=thought, raw=raw, error="final_answer must be one of "
                                + ", ".join(choices))
            answer = chosen
        return Decision(thought=thought, answer=answer.strip()[:MAX_FREE_ANSWER_CHARS], raw=raw)
    if has_tool:
        name, arguments = data["tool"], data.get("arguments", {})
        if not isinstance(name, str) or not name:
            return Decision(thought=thought, raw=raw, error="tool must be a tool name")
        if not isinstance(arguments, dict):
            return Decision(thought=thought, raw=raw, error="arguments must be a JSON object")
        return Decision(thought=thought, call=ToolCall(name=name, arguments=arguments), raw=raw)
    return Decision(thought=thought, raw=raw, error="output has neither 'tool' nor "
                    "'final_answer'")

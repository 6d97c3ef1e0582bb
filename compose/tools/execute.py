"""Running one tool call safely: allow-list, argument validation, timeout, result size cap.

Whatever goes wrong - a tool outside the allow-list, arguments that fail validation, a tool
that raises, runs past its timeout, or returns something its result model rejects - comes
back as an :class:`Observation` with ``error`` set, which the agent reads on its next step.
Nothing here raises for a bad call: the model's output is untrusted input.

A timed-out tool runs on in a daemon thread (Python cannot kill a thread); its result is
discarded and the process is not kept alive by it. Tools are meant to be short and side-effect
free, which is what makes that acceptable.

Usage::

    from compose.tools.execute import ToolCall, execute_call
    obs = execute_call(ToolCall(name="bmi", arguments={"weight_kg": 68, "height_m": 1.65}),
                       allowed=["bmi"])
    obs.ok, obs.result
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic_core import to_jsonable_python

from compose.runtime import ModuleContext
from compose.tools.registry import Tool, get_tool


class ToolCall(BaseModel):
    """A request to run a tool, as parsed from the model's output (not yet trusted)."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Observation(BaseModel):
    """What the agent sees after a call. ``valid`` says whether the call passed the
    allow-list and argument validation (a valid call can still fail while running)."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    valid: bool
    ok: bool
    result: str = ""
    error: str | None = None
    latency_s: float = 0.0


def validation_message(exc: ValidationError, limit: int = 3) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
        for err in exc.errors()[:limit]
    )


def cap_text(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` characters, saying how much was dropped."""
    if len(text) <= max_chars:
        return text
    marker = f" ...[truncated {len(text) - max_chars} chars]"
    return text[: max(0, max_chars - len(marker))] + marker


def render_result(value: Any) -> str:
    """Results are shown to the model as compact JSON (strings as they are)."""
    if isinstance(value, str):
        return value
    return json.dumps(to_jsonable_python(value, fallback=str), ensure_ascii=False)


def run_with_timeout(fn: Callable[..., Any], kwargs: dict[str, Any], timeout_s: float) -> Any:
    """Run ``fn(**kwargs)`` in a daemon thread; raise TimeoutError after ``timeout_s``."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(**kwargs)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name=f"tool-{fn.__name__}")
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"tool did not finish within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _failure(call_name: str, arguments: Any, error: str, *, valid: bool,
             started: float) -> Observation:
    args = arguments if isinstance(arguments, dict) else {}
    return Observation(tool=str(call_name), arguments=to_jsonable_python(args, fallback=str),
                       valid=valid, ok=False, error=error,
                       latency_s=time.perf_counter() - started)


def _resolve(call: ToolCall, allowed: Sequence[str]) -> Tool | str:
    if call.name not in allowed:
        return (f"tool {call.name!r} is not allowed in this graph "
                f"(allowed: {', '.join(allowed) or 'none'})")
    try:
        return get_tool(call.name)
    except KeyError as exc:
        return str(exc.args[0])


def execute_call(call: ToolCall, allowed: Sequence[str], ctx: ModuleContext | None = None, *,
                 timeout_s: float | None = None, max_chars: int | None = None) -> Observation:
    """Check, run and summarise one call. ``timeout_s`` / ``max_chars`` tighten the tool's
    own limits (the smaller wins); they never loosen them."""
    started = time.perf_counter()
    resolved = _resolve(call, allowed)
    if isinstance(resolved, str):
        return _failure(call.name, call.arguments, resolved, valid=False, started=started)
    entry = resolved
    try:
        args = entry.Args.model_validate(call.arguments)
    except ValidationError as exc:
        return _failure(call.name, call.arguments,
                        f"invalid arguments for {entry.name}: {validation_message(exc)}",
                        valid=False, started=started)
    kwargs = dict(args)
    if entry.context_param is not None:
        kwargs[entry.context_param] = ctx or ModuleContext()
    limit = min(entry.timeout_s, timeout_s) if timeout_s else entry.timeout_s
    cap = min(entry.max_result_chars, max_chars) if max_chars else entry.max_result_chars
    shown_args = args.model_dump(mode="json")
    try:
        value = run_with_timeout(entry.fn, kwargs, limit)
        if entry.Result is not None:
            value = entry.Result.model_validate(
                value.model_dump() if isinstance(value, BaseModel) else value)
        text = render_result(value)
    except ValidationError as exc:
        return _failure(entry.name, shown_args, f"{entry.name} returned an invalid result: "
                        f"{validation_message(exc)}", valid=True, started=started)
    except Exception as exc:
        return _failure(entry.name, shown_args, f"{entry.name} failed: "
                        f"{type(exc).__name__}: {exc}", valid=True, started=started)
    return Observation(tool=entry.name, arguments=shown_args, valid=True, ok=True,
                       result=cap_text(text, cap), latency_s=time.perf_counter() - started)

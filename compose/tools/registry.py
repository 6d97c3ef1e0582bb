"""The tool registry: the only code an agent can ever call.

A tool is a typed Python function turned into data the agent loop can use: a name, a
description (the docstring's first paragraph), a pydantic argument model built from the
signature, and an optional result model. An agent graph names tools by registry name in an
allow-list, exactly as graphs name modules, so a model's output can pick among registered,
allowed tools but can never name arbitrary code. A built-in tool's file is imported when the
tool is first named (``BUILTIN_TOOLS``); an installed package adds tools through the
``composerag.tools`` entry-point group (see :mod:`compose.plugins`).

A parameter annotated :class:`~compose.module.ModuleContext` is not an argument: the executor
passes the calling node's context (generator, retriever, cost stats) in its place.

Usage::

    from compose.tools.registry import tool

    @tool(timeout_s=2.0)
    def add(a: int, b: int = 1) -> int:
        \"\"\"Add two integers.\"\"\"
        return a + b
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from compose.plugins import Registry
from compose.runtime import ModuleContext

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_RESULT_CHARS = 2000


class Tool(BaseModel):
    """One registered tool. ``Args`` validates a call's arguments; ``Result`` (optional)
    validates what the function returned before the agent sees it."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = Field(min_length=1)
    Args: type[BaseModel]
    Result: type[BaseModel] | None = None
    fn: Callable[..., Any]
    context_param: str | None = None
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0)
    max_result_chars: int = Field(default=DEFAULT_MAX_RESULT_CHARS, ge=64)
    retrieves: bool = Field(default=False, description="The tool searches the calling "
                            "graph's index, so a node allowed to call it needs one.")

    def args_schema(self) -> dict[str, Any]:
        return self.Args.model_json_schema()

    def signature_line(self) -> str:
        """``name(arg: type, ...)``: how a prompt shows the tool to a small model."""
        props = self.args_schema().get("properties", {})
        args = ", ".join(f"{k}: {v.get('type', 'value')}" for k, v in props.items())
        return f"{self.name}({args})"


BUILTIN_TOOLS: dict[str, str] = {
    "bmi": "compose.modules.medical.calculators",
    "cha2ds2_vasc": "compose.modules.medical.calculators",
    "cockcroft_gault": "compose.modules.medical.calculators",
    "convert_lab_unit": "compose.modules.medical.lab_units",
    "egfr_ckd_epi_2021": "compose.modules.medical.calculators",
    "evidence_search": "compose.modules.medical.evidence",
}
"""Built-in tool name -> the file that registers it, imported when the name is first asked for
(the clinical tools live beside the methods that use them; the registry only names them)."""

TOOLS: Registry[Tool] = Registry("tool", "composerag.tools", BUILTIN_TOOLS,
                                 identity=lambda entry: entry.fn)


def _description(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return " ".join(doc.split("\n\n")[0].split())


def args_model(fn: Callable[..., Any], name: str) -> tuple[type[BaseModel], str | None]:
    """The pydantic model of ``fn``'s arguments (unknown keys forbidden) and the name of its
    context parameter, if any. Every argument needs a type annotation."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    context_param = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args/**kwargs cannot be validated")
        annotation = hints.get(param.name)
        if annotation is None:
            raise TypeError(f"tool {name!r}: argument {param.name!r} has no type annotation")
        if annotation is ModuleContext:
            context_param = param.name
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    model_name = "".join(part.title() for part in name.split("_")) + "Args"
    model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
    return model, context_param


def register_tool(entry: Tool) -> Tool:
    """Add a tool; a name cannot be taken twice by different functions."""
    return TOOLS.add(entry.name, entry)


def tool(
    name: str | None = None,
    *,
    description: str | None = None,
    result: type[BaseModel] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
    retrieves: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn`` as a tool and return it unchanged (still callable)."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        tool_name = name or fn.__name__
        model, context_param = args_model(fn, tool_name)
        text = description or _description(fn)
        if not text:
            raise TypeError(f"tool {tool_name!r} needs a description: the model chooses tools "
                            "by it (give a docstring or description=)")
        register_tool(Tool(
            name=tool_name,
            description=text,
            Args=model,
            Result=result,
            fn=fn,
            context_param=context_param,
            timeout_s=timeout_s,
            max_result_chars=max_result_chars,
            retrieves=retrieves,
        ))
        return fn

    return decorator


def get_tool(name: str) -> Tool:
    """The tool registered as ``name`` (built-in, plugin or registered in this process)."""
    return TOOLS.get(name)


def list_tools() -> dict[str, Tool]:
    """Every tool by name; warns of plugins that failed to load."""
    return dict(TOOLS.items())


def check_tool_names(names: Iterable[str]) -> list[str]:
    """Validate an allow-list: every name registered, no duplicates; returns it as a list.
    Raises ValueError, so pydantic reports it as a parameter error at the YAML path."""
    names = list(names)
    for tool_name in names:
        try:
            get_tool(tool_name)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"tools listed twice: {', '.join(duplicates)}")
    return names

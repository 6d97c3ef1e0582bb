"""One supervised example of one module's job, as tuning stores it.

An example keeps the module's typed (input, output) pair beside the rendered chat and target,
so that ``tune eval`` can run the module itself on the validation inputs and score its output
against the gold output with the module's own metric, while ``tune train`` reads only the
messages and the target.

Usage::

    example = render_example(Answer(), case)
    example.messages, example.target
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from compose.generators.base import Message
from compose.module import LLMModule
from compose.registry import get_module


class ModuleCase(BaseModel):
    """A gold (input, output) pair for a module, before rendering."""

    module: str
    params: dict[str, Any] = Field(default_factory=dict)
    input: dict[str, Any]
    output: dict[str, Any]
    source: str = Field(description="file:row of the training row it came from")
    group: str = Field(default="", description="Cases of one row (e.g. passage orders) "
                       "share a group, so a split never separates them.")
    variant: str = Field(default="", description="How this case was derived, e.g. 'perm1'.")


class TrainingExample(ModuleCase):
    messages: list[Message]
    target: str


def build_module(module: str, params: dict[str, Any]) -> LLMModule:
    cls = get_module(module)
    if not issubclass(cls, LLMModule):
        raise ValueError(f"module {module!r} makes no generator call, so it has nothing to tune")
    return cls(params)


def render_example(case: ModuleCase, module: LLMModule | None = None) -> TrainingExample:
    """Render ``case`` with the module's own prompt and emitted schema."""
    module = module or build_module(case.module, case.params)
    messages, target = module.training_pair(case.input, case.output)
    return TrainingExample(**case.model_dump(), messages=messages, target=target)

"""``shout``: the answer upper-cased, with a suffix. A deterministic module (no LLM call).

Usage (from YAML, after an ``answer`` node)::

    shout: {module: shout, params: {suffix: "!"}}
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from compose.module import Module
from compose.registry import register
from compose.runtime import ModuleContext


class ShoutInput(BaseModel):
    answer: str


class ShoutOutput(BaseModel):
    shouted: str


class ShoutParams(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo in YAML params is an error
    suffix: str = Field(default="!", max_length=8, description="Appended to the answer.")


@register
class Shout(Module[ShoutInput, ShoutOutput, ShoutParams]):
    name = "shout"
    purpose = "Upper-case the answer and end it with a suffix (the plugin example)."
    cacheable = False  # cheaper to recompute than to look up

    def run(self, inp: ShoutInput, ctx: ModuleContext) -> ShoutOutput:
        return ShoutOutput(shouted=inp.answer.upper() + self.params.suffix)

"""The module contract: an atomic, typed transformation.

A module declares pydantic ``Input``, ``Output`` and ``Params`` models, a registry ``name`` and
a one-line ``purpose``. Its result is a pure function of (module, params, prompt version,
model, input), which is what makes the SQLite cache and per-module evaluation possible.

Usage::

    from compose.modules.answer import Answer
    out = Answer(max_answer_words=5)({"question": "...", "passages": [...]})
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from compose.generators.base import Message
from compose.runtime import COST_FIELDS, ModuleContext


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


CACHE_FORMAT = 2  # bump when the stored value's shape changes


class PromptTemplate(BaseModel):
    """A versioned prompt. Bump ``version`` whenever the text changes: it keys the cache."""

    version: str
    system: str
    user: str

    def render(self, **fields: Any) -> list[Message]:
        return [
            Message(role="system", content=self.system.format(**fields)),
            Message(role="user", content=self.user.format(**fields)),
        ]


class Module(ABC):
    """Base class of every module. Subclasses set the class attributes and ``run``."""

    name: ClassVar[str]
    purpose: ClassVar[str]
    Input: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel]]
    Params: ClassVar[type[BaseModel]] = NoParams
    cacheable: ClassVar[bool] = True

    def __init__(self, params: BaseModel | dict | None = None, **overrides: Any) -> None:
        data = params.model_dump() if isinstance(params, BaseModel) else dict(params or {})
        data.update(overrides)
        self.params = self.Params.model_validate(data)

    @abstractmethod
    def run(self, inp: BaseModel, ctx: ModuleContext) -> BaseModel:
        """Transform one validated input into one output."""

    def cache_identity(self, ctx: ModuleContext) -> str:
        """What besides params and input determines the output (model, prompt, index)."""
        return ""

    def cache_key(self, inp: BaseModel, ctx: ModuleContext) -> str:
        return json.dumps(
            [
                CACHE_FORMAT,
                self.name,
                self.params.model_dump(mode="json"),
                self.cache_identity(ctx),
                inp.model_dump(mode="json"),
            ],
            sort_keys=True,
            ensure_ascii=False,
        )

    def __call__(
        self, inp: BaseModel | dict | None = None, ctx: ModuleContext | None = None, **fields: Any
    ) -> BaseModel:
        """Validate, look up the cache, run, store. ``ctx.stats`` tells what it cost."""
        ctx = ctx or ModuleContext()
        data = inp.model_dump() if isinstance(inp, BaseModel) else dict(inp or {})
        data.update(fields)
        validated = self.Input.model_validate(data)
        cache = ctx.runtime.cache if self.cacheable else None
        key = self.cache_key(validated, ctx) if cache is not None else ""
        if cache is not None:
            hit = cache.get(key)
            if hit is not None:
                # Counters keep the original call's cost, so eval tables report what the
                # method costs; time counters stay at what this call really spent.
                for field in COST_FIELDS:
                    setattr(ctx.stats, field, getattr(ctx.stats, field) + hit["stats"][field])
                ctx.stats.cache_hit = True
                return self.Output.model_validate(hit["output"])
        before = ctx.stats.model_copy()
        output = self.run(validated, ctx)
        if cache is not None:
            spent = {k: getattr(ctx.stats, k) - getattr(before, k) for k in COST_FIELDS}
            cache.put(key, self.name, {"output": output.model_dump(mode="json"),
                                       "stats": spent})
        return output

    @classmethod
    def describe(cls) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": cls.name,
            "purpose": cls.purpose,
            "input": cls.Input.model_json_schema(),
            "output": cls.Output.model_json_schema(),
            "params": cls.Params.model_json_schema(),
        }
        prompt = getattr(cls, "prompt", None)
        if prompt is not None:
            info["prompt_version"] = prompt.version
        return info


class LLMModule(Module):
    """A module answered by the generator under a JSON schema.

    ``LLMOutput`` is what the model must emit (defaults to ``Output``); ``postprocess`` turns
    it into ``Output`` (for example, dropping cited ids that were not in the input).
    """

    prompt: ClassVar[PromptTemplate]
    LLMOutput: ClassVar[type[BaseModel] | None] = None
    max_tokens: ClassVar[int] = 128
    streams_field: ClassVar[str | None] = None
    """The emitted string field that carries the module's answer text (``postprocess`` may
    only strip it): a graph streaming the final answer streams this field's tokens."""

    def emitted_model(self) -> type[BaseModel]:
        """The schema the model must fill; params may narrow it (say, to a set of labels)."""
        return self.LLMOutput or self.Output

    def cache_identity(self, ctx: ModuleContext) -> str:
        """Prompt version, output schema, token budget and model: a change misses the cache."""
        schema = json.dumps(self.emitted_model().model_json_schema(), sort_keys=True)
        digest = hashlib.sha256(schema.encode()).hexdigest()[:12]
        return (f"prompt={self.prompt.version}|schema={digest}|max_tokens={self.max_tokens}"
                f"|model={ctx.generator.model_id}")

    @abstractmethod
    def prompt_fields(self, inp: BaseModel) -> dict[str, Any]:
        """Values for the prompt template's placeholders."""

    def postprocess(self, inp: BaseModel, emitted: BaseModel) -> BaseModel:
        return self.Output.model_validate(emitted.model_dump())

    def messages(self, inp: BaseModel) -> list[Message]:
        """The chat this module sends the generator for ``inp``."""
        return self.prompt.render(**self.prompt_fields(inp))

    def emitted_from_output(self, inp: BaseModel, out: BaseModel) -> BaseModel:
        """The reply that ``postprocess`` would turn into ``out``: the inverse a training
        example needs. Modules whose output is not the emitted fields themselves override it
        (``answer`` maps passage ids back to the labels the model sees)."""
        return self.emitted_model().model_validate(out.model_dump())

    def training_pair(self, inp: BaseModel | dict,
                      out: BaseModel | dict) -> tuple[list[Message], str]:
        """A supervised example of this module's job from an (Input, Output) pair: the
        run-time messages for ``inp`` and the reply that yields ``out``, as JSON with the
        keys in the order llama.cpp's schema grammar writes them (required keys first), so
        that tuning teaches exactly what constrained decoding produces."""
        validated = inp if isinstance(inp, self.Input) else self.Input.model_validate(inp)
        output = out if isinstance(out, self.Output) else self.Output.model_validate(out)
        emitted = self.emitted_from_output(validated, output)
        schema = self.emitted_model().model_json_schema()
        required = set(schema.get("required", []))
        data = emitted.model_dump(mode="json")
        keys = [k for k in schema.get("properties", {}) if k in required]
        keys += [k for k in schema.get("properties", {}) if k not in required]
        return self.messages(validated), json.dumps({k: data[k] for k in keys},
                                                    ensure_ascii=False)

    def run(self, inp: BaseModel, ctx: ModuleContext) -> BaseModel:
        messages = self.messages(inp)
        emitted, _ = ctx.generate_structured(
            messages, self.emitted_model(), max_tokens=self.max_tokens,
            stream_field=self.streams_field,
        )
        return self.postprocess(inp, emitted)

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
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from compose.generators.base import Generation, Message
from compose.streaming import TokenSink
from compose.structured import generate_structured


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallStats(BaseModel):
    """What one module call cost; the trace and the eval tables are built from these."""

    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    generator_s: float = 0.0
    retriever_s: float = 0.0
    parse_retries: int = 0
    cache_hit: bool = False

    def add_generation(self, generation: Generation) -> None:
        self.llm_calls += 1
        self.tokens_in += generation.tokens_in
        self.tokens_out += generation.tokens_out
        self.generator_s += generation.latency_s


COST_FIELDS = ("llm_calls", "tokens_in", "tokens_out", "parse_retries")
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


class ModuleContext:
    """Per-call access to the shared runtime (generator, retriever, cache) plus cost stats.

    ``wrap_generator`` sees every generator call the module makes: a traced graph node passes
    one that makes each call a span (``compose.telemetry``). ``tokens`` is set for a graph
    node that writes the final answer while the run streams tokens: structured calls that
    name a ``stream_field`` then stream that field into it (``compose.streaming``)."""

    def __init__(self, runtime=None, *,
                 wrap_generator: Callable[[Any], Any] | None = None,
                 tokens: TokenSink | None = None) -> None:
        if runtime is None:
            from compose.runtime import Runtime

            runtime = Runtime.default()
        self.runtime = runtime
        self.stats = CallStats()
        self.wrap_generator = wrap_generator
        self.tokens = tokens

    def fresh(self) -> ModuleContext:
        return ModuleContext(self.runtime, wrap_generator=self.wrap_generator,
                             tokens=self.tokens)

    @property
    def generator(self):
        generator = self.runtime.generator
        return generator if self.wrap_generator is None else self.wrap_generator(generator)

    @property
    def retriever(self):
        return self.runtime.retriever

    def generate(self, messages: list[Message], **kwargs: Any) -> Generation:
        generation = self.generator.generate(messages, **kwargs)
        self.stats.add_generation(generation)
        return generation

    def generate_structured(
        self, messages: list[Message], output_model: type[BaseModel], *, max_tokens: int,
        stream_field: str | None = None,
    ) -> tuple[BaseModel, Generation]:
        """A schema-valid reply; ``stream_field`` names the emitted string field that holds
        the answer, streamed as it is generated when this context streams tokens."""
        sink = self.tokens if stream_field is not None else None
        parsed, generation, retries = generate_structured(
            self.generator,
            messages,
            output_model,
            max_tokens=max_tokens,
            max_retries=self.runtime.config.generator.max_parse_retries,
            on_generation=self.stats.add_generation,
            stream_to=(lambda: sink.attempt(stream_field)) if sink is not None else None,
        )
        self.stats.parse_retries += retries
        return parsed, generation

    def retrieve(self, query: str, *, k: int, mode: str | None = None):
        started = time.perf_counter()
        try:
            return self.retriever.search(query, k=k, mode=mode)
        finally:
            self.stats.retriever_s += time.perf_counter() - started


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

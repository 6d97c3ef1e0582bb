"""The module contract: an atomic, typed transformation.

A module declares pydantic ``Input``, ``Output`` and ``Params`` models, a registry ``name`` and
a one-line ``purpose``. Its result is a pure function of (module, params, prompt version,
model, input), which is what makes the SQLite cache and per-module evaluation possible.

A module writes its types once, as the type arguments of its base class
(``class Answer(LLMModule[AnswerInput, AnswerOutput, AnswerParams])``): they fill the
``Input``, ``Output`` and ``Params`` class attributes that the validator, the compiler, the
cache and tuning read, and they type ``run``, ``params`` and the call for the type checker.
A module without params names :class:`NoParams`.

Usage::

    from compose.corpus import Passage
    from compose.modules.answer import Answer

    passages = [Passage(id="p1", title="Kelp-oil lamp",
                        text="Mira Okafor invented the kelp-oil lamp in 1841.")]
    out = Answer(max_passages=3)({"question": "Who invented the kelp-oil lamp?",
                                  "passages": passages})
    out.answer, out.citations          # e.g. "Mira Okafor", ["p1"]

The second argument, a ModuleContext, defaults to the process's runtime (the embedded
model); a test passes ``Runtime(generator=ScriptedGenerator([...])).context()``.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, NamedTuple, get_args, get_origin

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

from compose.generators.base import Message
from compose.runtime import COST_FIELDS, ModuleContext


# The params of a module that takes none: any param in its node is an error. (No docstring:
# pydantic would put it into the schema ``composerag modules --json`` prints.)
class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A module's input, output and params models. The defaults (Any) make a bare ``Module`` mean
# "a module of any types", as in ``type[Module]`` for whatever the registry returns.
InT = TypeVar("InT", bound=BaseModel, default=Any)
OutT = TypeVar("OutT", bound=BaseModel, default=Any)
ParamsT = TypeVar("ParamsT", bound=BaseModel, default=Any)


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


class NodeIssue(NamedTuple):
    """A problem a module finds in a graph node that runs it (:meth:`Module.check_node`).
    ``path`` leads into the graph spec as its YAML has it (``("nodes", "agent", "params",
    "tools", 0)``), so validation reports it at that line."""

    path: tuple[str | int, ...]
    message: str


@dataclass(frozen=True)
class GraphFacts:
    """What a node check may know about the rest of the graph: its ``tools:`` allow-list
    (None when the allow-list itself failed the schema, which is reported already)."""

    tools: list[str] | None


class Module(ABC, Generic[InT, OutT, ParamsT]):
    """Base class of every module. Subclasses name their types as the type arguments
    (``Module[In, Out, Params]``), set ``name`` and ``purpose`` and write ``run``.

    Capabilities are declared, so that callers never test a module's name:

    - ``retrieves``: ``run`` searches the graph's index and outputs the ``passages`` it found.
      A node of it needs an index, and the evaluation counts its passages as retrieved.
    - ``uses_tools``: ``params.tools`` names registered tools the node may call
      (``compose.tools``); each must also be in the graph's ``tools:`` allow-list.
    - ``cacheable``: the output is a pure function of the cache key, so it may be stored.

    Hooks with defaults a module may override: :meth:`needs_index` (a node's need of an
    index can depend on its params, e.g. on the tools it may call), :meth:`check_node`
    (checks of a node only this module knows; validation reports them with the YAML line)
    and :meth:`trace_summary` (one line of ``composerag trace show`` for its output).
    """

    name: ClassVar[str]
    purpose: ClassVar[str]
    # Class attributes at run time, filled from the type arguments by __init_subclass__ (a
    # type checker allows no type variable in a ClassVar, hence the plain annotations).
    Input: type[InT]
    Output: type[OutT]
    Params: type[ParamsT]
    cacheable: ClassVar[bool] = True
    retrieves: ClassVar[bool] = False
    uses_tools: ClassVar[bool] = False
    # The attribute each of the class's own type parameters fills, in their order (None: a
    # parameter of some other generic base); ``__parameters__`` is set by ``Generic``.
    _type_roles: ClassVar[tuple[str | None, ...]] = ("Input", "Output", "Params")
    __parameters__: ClassVar[tuple[object, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Set ``Input``/``Output``/``Params`` from the type arguments of the class's
        generic bases, so that a module writes its types once. An attribute the class also
        assigns itself must be the same model; a type argument that is still a type variable
        (a generic intermediate base) is filled by that class's own subclasses."""
        super().__init_subclass__(**kwargs)
        roles: dict[object, str] = {}
        for base in cls.__dict__.get("__orig_bases__", ()):
            origin = get_origin(base)
            if not (isinstance(origin, type) and issubclass(origin, Module)):
                continue
            for role, arg in zip(origin._type_roles, get_args(base), strict=True):
                if role is None:
                    continue
                if isinstance(arg, TypeVar):
                    roles[arg] = role
                    continue
                if not (isinstance(arg, type) and issubclass(arg, BaseModel)):
                    raise TypeError(f"{cls.__name__}: the {role} type argument must be a "
                                    f"pydantic model class, not {arg!r}")
                own = cls.__dict__.get(role)
                if own is not None and own is not arg:
                    raise TypeError(f"{cls.__name__}.{role} is {own.__name__} but its type "
                                    f"argument is {arg.__name__}")
                setattr(cls, role, arg)
        cls._type_roles = tuple(roles.get(param) for param in cls.__parameters__)

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, **overrides: Any) -> None:
        """``params`` already validated as ``Params`` (a resolved graph's node) is used as
        it is; anything else is validated, with ``overrides`` applied on top."""
        if isinstance(params, self.Params) and not overrides:
            self.params: ParamsT = params
            return
        data = params.model_dump() if isinstance(params, BaseModel) else dict(params or {})
        data.update(overrides)
        self.params = self.Params.model_validate(data)

    @classmethod
    def needs_index(cls, params: ParamsT) -> bool:
        """Whether a node with these (validated) params searches the graph's index, so the
        graph cannot run without one."""
        return cls.retrieves

    @classmethod
    def check_node(cls, node: str, params: Mapping[str, Any],
                   graph: GraphFacts) -> list[NodeIssue]:
        """Problems of node ``node`` that only this module can see, beyond its params schema
        (already checked: ``params`` is the node's raw params, possibly invalid)."""
        return []

    @classmethod
    def trace_summary(cls, output: dict[str, Any]) -> str | None:
        """One line of Rich markup summarising a node's recorded ``output`` in the trace
        view; None leaves it to the view's generic summary (the output as JSON)."""
        return None

    @abstractmethod
    def run(self, inp: InT, ctx: ModuleContext) -> OutT:
        """Transform one validated input into one output."""

    def cache_identity(self, ctx: ModuleContext) -> str:
        """What besides params and input determines the output (model, prompt, index)."""
        return ""

    def cache_params(self) -> dict[str, Any]:
        """The params as the cache key holds them: all of them, unless some are keyed
        already through :meth:`cache_identity` (a param that only picks the prompt)."""
        return self.params.model_dump(mode="json")

    def cache_key(self, inp: InT, ctx: ModuleContext) -> str:
        return json.dumps(
            [
                CACHE_FORMAT,
                self.name,
                self.cache_params(),
                self.cache_identity(ctx),
                inp.model_dump(mode="json"),
            ],
            sort_keys=True,
            ensure_ascii=False,
        )

    def __call__(
        self, inp: BaseModel | dict[str, Any] | None = None, ctx: ModuleContext | None = None,
        **fields: Any,
    ) -> OutT:
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
            "capabilities": {"retrieves": cls.retrieves, "uses_tools": cls.uses_tools,
                             "cacheable": cls.cacheable},
        }
        prompt = getattr(cls, "prompt", None)
        if prompt is not None:
            info["prompt_version"] = prompt.version
        return info


class LLMModule(Module[InT, OutT, ParamsT]):
    """A module answered by the generator under a JSON schema.

    ``LLMOutput`` is what the model must emit (defaults to ``Output``); ``postprocess`` turns
    it into ``Output`` (for example, dropping cited ids that were not in the input). The
    emitted object is an instance of :meth:`emitted_model`, which params may choose at run
    time, so its static type is the one a subclass's ``postprocess`` declares.
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

    def template(self) -> PromptTemplate:
        """The prompt this instance sends: ``prompt``, unless its params pick another."""
        return self.prompt

    def cache_identity(self, ctx: ModuleContext) -> str:
        """Prompt version, output schema, token budget and model: a change misses the cache."""
        schema = json.dumps(self.emitted_model().model_json_schema(), sort_keys=True)
        digest = hashlib.sha256(schema.encode()).hexdigest()[:12]
        return (f"prompt={self.template().version}|schema={digest}|max_tokens={self.max_tokens}"
                f"|model={ctx.generator.model_id}")

    @abstractmethod
    def prompt_fields(self, inp: InT) -> dict[str, Any]:
        """Values for the prompt template's placeholders."""

    def postprocess(self, inp: InT, emitted: Any) -> OutT:
        return self.Output.model_validate(emitted.model_dump())

    def messages(self, inp: InT) -> list[Message]:
        """The chat this module sends the generator for ``inp``."""
        return self.template().render(**self.prompt_fields(inp))

    def emitted_from_output(self, inp: InT, out: OutT) -> BaseModel:
        """The reply that ``postprocess`` would turn into ``out``: the inverse a training
        example needs. Modules whose output is not the emitted fields themselves override it
        (``answer`` maps passage ids back to the labels the model sees)."""
        return self.emitted_model().model_validate(out.model_dump())

    def training_pair(self, inp: InT | dict[str, Any],
                      out: OutT | dict[str, Any]) -> tuple[list[Message], str]:
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

    def run(self, inp: InT, ctx: ModuleContext) -> OutT:
        messages = self.messages(inp)
        emitted, _ = ctx.generate_structured(
            messages, self.emitted_model(), max_tokens=self.max_tokens,
            stream_field=self.streams_field,
        )
        return self.postprocess(inp, emitted)

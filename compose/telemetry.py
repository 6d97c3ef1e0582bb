"""OpenTelemetry traces of graph runs: a span per run, per node and per generator call.

The spans nest as ``invoke_workflow <graph>`` -> ``node <name>`` -> ``chat <model>``; the
generator spans carry the GenAI semantic-convention attributes (``gen_ai.*``), so a GenAI
aware backend (Jaeger, Tempo, Phoenix, Langfuse...) shows the model calls with their tokens.

Tracing is decided when a graph is compiled (``load_graph``), and is on when
``OTEL_SDK_DISABLED`` is not ``true`` and one of these holds, in this order:

1. :func:`use_tracer_provider` named a provider (an application keeping composerag's spans
   apart from its own, or a test with an in-memory exporter);
2. the application has set the global provider (``opentelemetry.trace.set_tracer_provider``):
   this is how an embedding application uses it, and runs then nest under the span that is
   current when the graph is invoked (a web request's, say);
3. ``OTEL_TRACES_EXPORTER`` (other than ``none``), ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
   ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set: composerag sets up the SDK itself from the
   standard variables, which is how ``composerag run`` and ``composerag serve`` are traced.

Off, it costs a few dictionary look-ups per compiled graph: nothing from OpenTelemetry is
imported, no callback is attached, nodes run as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uuid import UUID

    from opentelemetry.trace import Span, Tracer, TracerProvider

    from compose.config import GeneratorConfig
    from compose.generators.base import Generation, Message

log = logging.getLogger(__name__)

TRACER_NAME = "composerag"
# OTLP without a protocol: the OpenTelemetry specification's default, http/protobuf, which is
# what the ``otel`` extra installs (the Python SDK alone would pick gRPC).
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_chosen_provider: TracerProvider | None = None
_env_setup = threading.Lock()
_env_provider: TracerProvider | None = None
_env_setup_done = False


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Send the spans of graphs compiled from now on to ``provider`` instead of the global
    one; ``None`` goes back to the global provider and the ``OTEL_*`` variables."""
    global _chosen_provider
    _chosen_provider = provider


def tracer() -> Tracer | None:
    """The tracer composerag's spans go to, or None when tracing is off (see the module
    docstring for when it is on)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    provider = _chosen_provider or _global_provider() or _provider_from_env()
    return provider.get_tracer(TRACER_NAME) if provider is not None else None


def _global_provider() -> TracerProvider | None:
    """The application's provider, if it set one. Setting one means importing
    ``opentelemetry.trace``, so a process that never did has none and imports nothing here."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    unset = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    return None if isinstance(provider, unset) else provider


def _exporter_names() -> list[str]:
    """Entry-point names of the span exporters the ``OTEL_*`` variables ask for."""
    names = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not names:
        names = "otlp" if any(os.environ.get(v) for v in _ENDPOINT_VARIABLES) else "none"
    if names.lower() == "none":
        return []
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    if protocol not in _OTLP_BY_PROTOCOL:
        log.warning("OTLP protocol %r is not supported here (grpc, http/protobuf); "
                    "exporting over http/protobuf", protocol)
    otlp = _OTLP_BY_PROTOCOL.get(protocol, "otlp_proto_http")
    return [otlp if name.strip() == "otlp" else name.strip() for name in names.split(",")]


def _provider_from_env() -> TracerProvider | None:
    """Set up the SDK once from the ``OTEL_*`` variables and make it the global provider, so
    the application's other instrumentation (httpx, FastAPI) joins the same traces. Exporters
    are found through the ``opentelemetry_traces_exporter`` entry points, as the SDK's own
    configurator finds them; each reads its endpoint, headers and timeout from the variables.
    A missing package is a warning, not an error, and leaves the run untraced: tracing must
    never stop a run."""
    global _env_provider, _env_setup_done
    with _env_setup:
        if _env_setup_done:
            return _env_provider
        _env_setup_done = True
        names = _exporter_names()
        if not names:
            return None
        try:
            from opentelemetry import trace
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning("OTEL_* variables ask for traces but the OpenTelemetry SDK is not "
                        "installed: pip install 'composerag[otel]'; running untraced")
            return None
        from importlib.metadata import entry_points

        exporters = []
        for name in names:
            found = entry_points(group="opentelemetry_traces_exporter", name=name)
            if found:
                exporter_class = next(iter(found)).load()
                exporters.append(exporter_class(out=_CurrentStdout()) if name == "console"
                                 else exporter_class())
            else:
                log.warning("no installed package provides the span exporter %r named by "
                            "OTEL_TRACES_EXPORTER (for OTLP: pip install 'composerag[otel]')",
                            name)
        if not exporters:
            return None
        provider = SdkTracerProvider(resource=Resource.create())  # OTEL_SERVICE_NAME etc.
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* apply
        trace.set_tracer_provider(provider)
        _env_provider = trace.get_tracer_provider()  # the application's, if it won a race
        return _env_provider


class _CurrentStdout:
    """``sys.stdout`` as it is when spans are written. llama-cpp-python points it at
    /dev/null while a model loads, and ``composerag run`` loads the model on a thread while
    the graph compiles: the console exporter would otherwise keep the /dev/null stream."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def params_hash(params: Mapping[str, Any]) -> str:
    """A short digest of a node's module params: which configuration ran, low-cardinality."""
    text = json.dumps(params, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def graph_tracing(graph: str, generator_config: GeneratorConfig) -> GraphTracing | None:
    """What a compiled graph needs to emit its spans, or None when tracing is off."""
    found = tracer()
    return GraphTracing(found, graph, generator_config) if found is not None else None


class GraphTracing:
    """The spans of one compiled graph.

    The run span is opened by a LangChain callback handler (``callback``) that LangGraph
    calls when the graph starts and ends, however it is run: ``invoke``, ``stream``, their
    async forms, a resume, or as a subgraph. LangGraph runs nodes on worker threads (or an
    executor, under asyncio), so a node finds its run span from its own run id, which its
    config carries, rather than from the current context; inside the node the node span is
    current, so the generator spans (and a subgraph's run span) nest under it.
    """

    def __init__(self, tracer: Tracer, graph: str, generator_config: GeneratorConfig) -> None:
        self.tracer = tracer
        self.graph = graph
        self.generator_config = generator_config
        self.callback = _run_spans(tracer, graph)  # a LangChain callback handler

    @contextmanager
    def node_span(self, node: str, module: str, params_digest: str,
                  config: Mapping[str, Any] | None) -> Iterator[Span]:
        """The current span while a node runs; an exception escaping it marks the span as
        failed and is recorded as an exception event."""
        parent = self.callback.context_of(config)
        attributes = {"composerag.graph": self.graph, "composerag.node": node,
                      "composerag.module": module, "composerag.params_hash": params_digest}
        with self.tracer.start_as_current_span(f"node {node}", context=parent,
                                               attributes=attributes) as span:
            yield span

    def wrap_generator(self, generator: Any) -> TracedGenerator:
        return TracedGenerator(generator, self.tracer, self.generator_config)


def record_node(span: Span, event: Mapping[str, Any]) -> None:
    """Put a node's trace event (what it cost, whether the cache answered) on its span."""
    span.set_attributes({
        "composerag.cache_hit": bool(event["cache_hit"]),
        "composerag.llm_calls": event["llm_calls"],
        "composerag.tokens_in": event["tokens_in"],
        "composerag.tokens_out": event["tokens_out"],
        "composerag.parse_retries": event["parse_retries"],
        "composerag.latency_s": event["latency_s"],
        "composerag.generator_s": event["generator_s"],
        "composerag.retriever_s": event["retriever_s"],
    })
    if event.get("route") is not None:
        span.set_attribute("composerag.route", event["route"])


def _run_spans(tracer: Tracer, graph: str) -> Any:
    """Build the callback handler here, so that LangChain is imported only when tracing."""
    from langchain_core.callbacks import BaseCallbackHandler
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    class RunSpans(BaseCallbackHandler):
        """Opens a span when LangGraph starts a run of this graph and ends it with the run.

        The handler is inherited by every run inside the graph (nodes, routers, a subgraph
        invoked from a node), so a run whose parent it already knows is a child: it maps to
        its graph run's span context. Any other run is a run of this graph."""

        run_inline = True  # in the caller's context under asyncio too, not an executor's

        def __init__(self) -> None:
            self._contexts: dict[Any, Any] = {}
            self._spans: dict[Any, Span] = {}

        def context_of(self, config: Mapping[str, Any] | None) -> Any:
            """The run span's context for a node, from the run id in the node's config."""
            callbacks = (config or {}).get("callbacks")
            return self._contexts.get(getattr(callbacks, "parent_run_id", None))

        def on_chain_start(self, serialized: dict[str, Any], inputs: dict[str, Any], *,
                           run_id: UUID, parent_run_id: UUID | None = None,
                           **kwargs: Any) -> None:
            known = self._contexts.get(parent_run_id)
            if known is not None:
                self._contexts[run_id] = known
                return
            span = tracer.start_span(f"invoke_workflow {graph}", attributes={
                "gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": graph,
                "composerag.graph": graph})
            self._spans[run_id] = span
            self._contexts[run_id] = trace.set_span_in_context(span)

        def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
            span = self._finish(run_id)
            if span is not None:
                events = outputs.get("trace") if isinstance(outputs, dict) else None
                if isinstance(events, list):
                    span.set_attributes(_run_totals(events))
                span.end()

        def on_chain_error(self, error: BaseException, *, run_id: UUID,
                           **kwargs: Any) -> None:
            span = self._finish(run_id)
            if span is not None:
                if not isinstance(error, GeneratorExit):  # a consumer stopped reading
                    span.record_exception(error)
                    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: "
                                                             f"{error}"))
                span.end()

        def _finish(self, run_id: UUID) -> Span | None:
            self._contexts.pop(run_id, None)
            return self._spans.pop(run_id, None)

    return RunSpans()


def _run_totals(events: list[Mapping[str, Any]]) -> dict[str, int]:
    """A run's cost over the trace events in its final state."""
    return {
        "composerag.nodes_run": len(events),
        "composerag.llm_calls": sum(e.get("llm_calls", 0) for e in events),
        "composerag.tokens_in": sum(e.get("tokens_in", 0) for e in events),
        "composerag.tokens_out": sum(e.get("tokens_out", 0) for e in events),
    }


class TracedGenerator:
    """A generator whose ``generate`` calls are client spans with GenAI attributes; every
    other attribute (``model_id``, ``count_tokens``, ``exclusive``...) is the backend's."""

    def __init__(self, inner: Any, tracer: Tracer, config: GeneratorConfig) -> None:
        self._inner = inner
        self._tracer = tracer
        self._config = config

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def generate(self, messages: list[Message], **kwargs: Any) -> Generation:
        from opentelemetry.trace import SpanKind

        system = self._config.backend
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": system,  # the older name of gen_ai.provider.name
            "gen_ai.provider.name": system,
            "gen_ai.request.model": self._config.model,
            "gen_ai.output.type": "json" if kwargs.get("json_schema") else "text",
        }
        if "max_tokens" in kwargs:
            attributes["gen_ai.request.max_tokens"] = kwargs["max_tokens"]
        if "temperature" in kwargs:
            attributes["gen_ai.request.temperature"] = kwargs["temperature"]
        with self._tracer.start_as_current_span(f"chat {self._config.model}",
                                                kind=SpanKind.CLIENT,
                                                attributes=attributes) as span:
            generation: Generation = self._inner.generate(messages, **kwargs)
            span.set_attributes({
                "gen_ai.response.model": generation.model,
                "gen_ai.usage.input_tokens": generation.tokens_in,
                "gen_ai.usage.output_tokens": generation.tokens_out,
                "gen_ai.usage.cache_read.input_tokens": generation.cached_tokens,
                "composerag.generation.constrained": generation.constrained,
            })
            return generation

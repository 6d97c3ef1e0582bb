"""OpenTelemetry spans of graph runs (compose.telemetry), read back through the SDK's
in-memory exporter: the run -> node -> generator tree and its attributes on the real embedded
model over the demo index, errors, cache hits, context propagation across LangGraph's worker
threads and asyncio, the OTEL_* configuration in a fresh process, and the cost when off."""

from __future__ import annotations

import asyncio
import http.server
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from compose import telemetry
from compose.api import load_graph
from compose.config import CacheConfig, RetrieverConfig, RuntimeConfig
from compose.corpora.demo import load_demo
from compose.generators.base import GenerationError
from compose.graph.compiler import NodeError
from compose.graph.spec import EdgeSpec, GraphSpec, NodeSpec
from compose.runtime import Runtime
from compose.testing import ScriptedGenerator
from tests.conftest import answering, scripted_runtime

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Who invented the kelp-oil lamp?"


@pytest.fixture
def provider():
    """An SDK provider with an in-memory exporter, chosen for graphs compiled in the test."""
    exporter = InMemorySpanExporter()
    sdk = TracerProvider()
    sdk.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_tracer_provider(sdk)
    yield sdk, exporter
    telemetry.use_tracer_provider(None)
    sdk.shutdown()


@pytest.fixture
def spans(provider):
    return provider[1]


class Tree:
    """The finished spans, with parent links resolved."""

    def __init__(self, finished: tuple[ReadableSpan, ...]) -> None:
        self.spans = sorted(finished, key=lambda s: s.start_time)
        self.by_id = {s.context.span_id: s for s in self.spans}

    def parent(self, span: ReadableSpan) -> ReadableSpan | None:
        return self.by_id.get(span.parent.span_id) if span.parent is not None else None

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.spans if self.parent(s) is span]

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name.startswith(prefix)]

    def one_run(self, graph: str) -> ReadableSpan:
        runs = self.named("invoke_workflow")
        assert [r.name for r in runs] == [f"invoke_workflow {graph}"]
        return runs[0]


def check_run_tree(tree: Tree, graph: str, state: dict) -> ReadableSpan:
    """The invariants every traced run keeps: one run span with one node span per trace
    event, in order, whose attributes are the event's, and under each node exactly its
    generator calls, whose token counts add up to the node's."""
    run = tree.one_run(graph)
    nodes = tree.children(run)
    events = state["trace"]
    assert [n.name for n in nodes] == [f"node {e['node']}" for e in events]
    for span, event in zip(nodes, events, strict=True):
        attrs = span.attributes
        assert attrs["composerag.graph"] == graph
        assert attrs["composerag.module"] == event["module"]
        assert attrs["composerag.cache_hit"] is event["cache_hit"]
        assert attrs["composerag.latency_s"] == pytest.approx(event["latency_s"])
        assert (attrs["composerag.tokens_in"], attrs["composerag.tokens_out"],
                attrs["composerag.llm_calls"]) == (event["tokens_in"], event["tokens_out"],
                                                   event["llm_calls"])
        assert len(attrs["composerag.params_hash"]) == 12
        assert attrs.get("composerag.route") == event["route"]
        assert span.status.status_code is StatusCode.UNSET
        calls = tree.children(span)
        assert all(c.name.startswith("chat ") for c in calls)
        assert len(calls) == event["llm_calls"]
        assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in calls) \
            == event["tokens_in"]
        assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in calls) \
            == event["tokens_out"]
        for call in calls:  # inside the node's time, not just linked to it
            assert span.start_time <= call.start_time <= call.end_time <= span.end_time
    assert run.attributes["composerag.nodes_run"] == len(events)
    assert run.attributes["composerag.tokens_in"] == sum(e["tokens_in"] for e in events)
    assert run.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run.attributes["gen_ai.workflow.name"] == graph
    return run


def test_naive_rag_on_the_real_model_gives_run_node_and_generator_spans(spans, demo_index):
    graph = load_graph("naive_rag", index=demo_index, cache=False)
    state = graph.invoke(question=QUESTION)
    tree = Tree(spans.get_finished_spans())
    run = check_run_tree(tree, "naive_rag", state)
    assert tree.parent(run) is None
    retrieve, answer = tree.children(run)
    assert tree.children(retrieve) == []
    assert retrieve.attributes["composerag.retriever_s"] > 0
    (call,) = tree.children(answer)
    attrs = call.attributes
    assert call.name == "chat smollm2-135m"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.system"] == attrs["gen_ai.provider.name"] == "llama_cpp"
    assert attrs["gen_ai.request.model"] == "smollm2-135m"
    assert attrs["gen_ai.response.model"] == graph.runtime.generator.model_id
    assert attrs["gen_ai.request.max_tokens"] == 96  # the answer module's budget
    assert attrs["gen_ai.output.type"] == "json"
    assert attrs["gen_ai.usage.input_tokens"] > 100  # the passages are in the prompt
    assert 0 < attrs["gen_ai.usage.output_tokens"] <= 96


def test_compose_rag_on_the_real_model_nests_every_node_and_call(spans, demo_index):
    question = load_demo().questions[0].question  # a bridge question: two hops
    graph = load_graph("compose_rag", index=demo_index, cache=False)
    state = graph.invoke(question=question)
    tree = Tree(spans.get_finished_spans())
    run = check_run_tree(tree, "compose_rag", state)
    nodes = [n.attributes["composerag.node"] for n in tree.children(run)]
    assert {"decompose", "next_hop", "answer", "synthesize"} <= set(nodes)
    # the branching nodes record where they sent the run
    routes = {n.attributes["composerag.node"]: n.attributes.get("composerag.route")
              for n in tree.children(run)}
    assert routes["next_hop"] in {"construct", "synthesize"}
    calls = tree.named("chat ")
    assert len(calls) == sum(e["llm_calls"] for e in state["trace"]) >= 2
    assert run.attributes["composerag.llm_calls"] == len(calls)
    # no span is left out of the tree
    assert all(tree.parent(s) is not None for s in tree.spans if s is not run)


def test_params_hash_tells_configurations_apart(spans, demo_index):
    def retrieve_hash(*overrides: str) -> str:
        graph = load_graph("naive_rag", runtime=scripted_runtime(answering("Doran Vesk"),
                                                                   index=demo_index),
                           overrides=list(overrides))
        graph.invoke(question=QUESTION)
        span = Tree(spans.get_finished_spans()).named("node retrieve")[-1]
        spans.clear()
        return span.attributes["composerag.params_hash"]

    assert retrieve_hash() == retrieve_hash()
    assert retrieve_hash("nodes.retrieve.params.k=3") != retrieve_hash()


def test_a_cache_hit_shows_on_the_node_span_with_no_generator_call(spans, demo_index,
                                                                   tmp_path):
    config = RuntimeConfig(retriever=RetrieverConfig(index=str(demo_index)),
                           cache=CacheConfig(enabled=True, path=str(tmp_path / "c.sqlite")))
    runtime = Runtime(config, generator=ScriptedGenerator(answering("Doran Vesk")))
    graph = load_graph("naive_rag", runtime=runtime)
    graph.invoke(question=QUESTION)
    spans.clear()
    graph.invoke(question=QUESTION)
    tree = Tree(spans.get_finished_spans())
    answer = tree.named("node answer")[0]
    assert answer.attributes["composerag.cache_hit"] is True
    assert answer.attributes["composerag.tokens_in"] > 0  # the cached call's cost
    assert tree.children(answer) == [] and tree.named("chat ") == []


def test_a_failing_node_marks_its_span_the_call_and_the_run_as_errors(spans, demo_index):
    def backend_down(messages):
        raise GenerationError("backend down: connection refused")

    graph = load_graph("naive_rag", runtime=scripted_runtime(backend_down, index=demo_index))
    with pytest.raises(NodeError):
        graph.invoke(question=QUESTION)
    tree = Tree(spans.get_finished_spans())
    run = tree.one_run("naive_rag")
    retrieve, answer = tree.children(run)
    assert retrieve.status.status_code is StatusCode.UNSET
    (call,) = tree.children(answer)
    for span in (call, answer, run):
        assert span.status.status_code is StatusCode.ERROR
        assert "backend down" in span.status.description
        (event,) = [e for e in span.events if e.name == "exception"]
        assert "backend down" in event.attributes["exception.message"]
    assert call.events[0].attributes["exception.type"].endswith("GenerationError")
    assert answer.events[0].attributes["exception.type"].endswith("NodeError")


def fan_out_spec() -> GraphSpec:
    """retrieve, then two answer nodes in the same step: LangGraph runs one of them on its
    worker pool, off the thread that invoked the graph."""
    def answer_node(prefix: str, passages: int) -> NodeSpec:
        return NodeSpec(module="answer", params={"max_passages": passages},
                        outputs={"answer": prefix, "citations": f"{prefix}_citations",
                                 "is_unknown": f"{prefix}_unknown"})

    return GraphSpec(
        name="fan_out", entry="retrieve", outputs=["short", "wide"],
        nodes={"retrieve": NodeSpec(module="retrieve", params={"k": 3},
                                    inputs={"query": "question"}),
               "short": answer_node("short", 1), "wide": answer_node("wide", 3)},
        edges=[EdgeSpec(source="retrieve", to="short"), EdgeSpec(source="retrieve", to="wide"),
               EdgeSpec(source="short", to="END"), EdgeSpec(source="wide", to="END")])


def test_runs_nest_under_the_callers_span_from_worker_threads(provider, demo_index):
    sdk, spans = provider
    threads: set[str] = set()

    def reply(messages):
        threads.add(threading.current_thread().name)
        return {"answer": "Doran Vesk", "citations": [1]}

    graph = load_graph(fan_out_spec(), runtime=scripted_runtime(reply, index=demo_index))
    with sdk.get_tracer("host-app").start_as_current_span("POST /ask") as request:
        state = graph.invoke(question=QUESTION)
    assert threads - {threading.current_thread().name}  # a node ran on LangGraph's pool
    tree = Tree(spans.get_finished_spans())
    run = tree.one_run("fan_out")
    assert tree.parent(run).name == "POST /ask"
    assert run.context.trace_id == request.get_span_context().trace_id
    nodes = tree.children(run)
    assert sorted(n.name for n in nodes) == ["node retrieve", "node short", "node wide"]
    assert len(nodes) == len(state["trace"])
    for node in nodes:
        assert len(tree.children(node)) == (node.name != "node retrieve")


def test_concurrent_runs_keep_their_own_trees_on_threads_and_asyncio(spans, demo_index):
    """Overlapping runs of one compiled graph: every node lands under its own run."""
    def slow_reply(messages):
        time.sleep(0.05)
        question = messages[-1].content.split("Question: ")[-1].split("\n")[0]
        return {"answer": question, "citations": [1]}

    graph = load_graph("naive_rag", runtime=scripted_runtime(slow_reply, index=demo_index))
    questions = [f"Who invented lamp number {i}?" for i in range(4)]

    def check(states):
        tree = Tree(spans.get_finished_spans())
        runs = tree.named("invoke_workflow")
        assert len(runs) == len(states)
        answers = set()
        for run in runs:
            nodes = tree.children(run)
            assert [n.name for n in nodes] == ["node retrieve", "node answer"]
            (call,) = tree.children(nodes[1])
            answers.add(call.parent.span_id)
            assert nodes[1].context.trace_id == run.context.trace_id
        assert len(answers) == len(states)
        spans.clear()

    with ThreadPoolExecutor(max_workers=4) as pool:
        check(list(pool.map(lambda q: graph.invoke(question=q), questions)))

    async def together():
        return await asyncio.gather(*(graph.ainvoke(question=q) for q in questions))

    check(asyncio.run(together()))

    async def streamed():
        return [chunk async for chunk in graph.astream(question=questions[0])]

    asyncio.run(streamed())
    check([None])


def test_a_stream_read_to_the_end_or_abandoned_ends_its_run_span(spans, demo_index):
    graph = load_graph("naive_rag", runtime=scripted_runtime(answering("Doran Vesk"),
                                                             index=demo_index))
    updates = list(graph.stream(question=QUESTION))
    assert [next(iter(u)) for u in updates] == ["retrieve", "answer"]
    assert Tree(spans.get_finished_spans()).one_run("naive_rag").attributes[
        "composerag.nodes_run"] == 2
    spans.clear()
    stream = graph.stream(question=QUESTION)
    next(stream)
    stream.close()  # the reader stopped after the first node
    run = Tree(spans.get_finished_spans()).one_run("naive_rag")
    assert run.status.status_code is StatusCode.UNSET  # stopping is not a failure


def test_otel_sdk_disabled_turns_tracing_off(spans, demo_index, monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    graph = load_graph("naive_rag", runtime=scripted_runtime(answering("Doran Vesk"),
                                                             index=demo_index))
    graph.invoke(question=QUESTION)
    assert spans.get_finished_spans() == ()
    assert not (graph.graph.config or {}).get("callbacks")


def run_python(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` (or ``-m module args``) in a fresh interpreter with only these OTEL_*
    variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    argv = [sys.executable, "-c", code] if code else [sys.executable, *args]
    result = subprocess.run(argv, env={**clean, **env}, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


SCRIPTED_RUN = """
from compose.api import load_graph
from compose.config import RetrieverConfig, RuntimeConfig
from compose.runtime import Runtime
from compose.testing import ScriptedGenerator
reply = {{"answer": "Doran Vesk", "citations": [1]}}
runtime = Runtime(RuntimeConfig(retriever=RetrieverConfig(index={index!r})),
                  generator=ScriptedGenerator(lambda messages: reply))
graph = load_graph("naive_rag", runtime=runtime)
graph.invoke(question="Who invented the kelp-oil lamp?")
"""
# prints "True False" when the run above was untraced: no tracer, no run-span callback
TRACING_OFF = """
from compose import telemetry
print(telemetry.tracer() is None, bool((graph.graph.config or {}).get("callbacks")))
"""


def test_without_configuration_nothing_is_attached_or_imported(demo_index):
    code = SCRIPTED_RUN.format(index=str(demo_index)) + TRACING_OFF
    assert run_python(code, {}).stdout.split() == ["True", "False"]
    # compose.telemetry itself imports nothing from OpenTelemetry until tracing is on
    probe = ("import sys, compose.telemetry; "
             "print(any(m.startswith('opentelemetry') for m in sys.modules))")
    assert run_python(probe, {}).stdout.strip() == "False"


class Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver on loopback: keeps each request body."""

    bodies: list[tuple[str, bytes]] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers["Content-Length"])
        type(self).bodies.append((self.path, self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_otlp_endpoint_variable_exports_the_run_over_http(demo_index):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    Collector.bodies = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        run_python(SCRIPTED_RUN.format(index=str(demo_index)), {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
            "OTEL_SERVICE_NAME": "composerag-under-test"})
    finally:
        server.shutdown()
    paths = {path for path, _ in Collector.bodies}
    assert paths == {"/v1/traces"}
    names, services = [], set()
    for _, body in Collector.bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes
                         if a.key == "service.name"}
            for scope in resource_spans.scope_spans:
                assert scope.scope.name == "composerag"
                names += [span.name for span in scope.spans]
    assert services == {"composerag-under-test"}
    assert sorted(names) == sorted(["invoke_workflow naive_rag", "node retrieve",
                                    "node answer", "chat smollm2-135m"])


def test_a_run_still_works_when_the_variables_name_a_missing_exporter(demo_index):
    code = SCRIPTED_RUN.format(index=str(demo_index)) + TRACING_OFF
    result = run_python(code, {"OTEL_TRACES_EXPORTER": "carrier_pigeon"})
    assert result.stdout.split() == ["True", "False"]  # untraced, not traced to nowhere
    assert "'carrier_pigeon'" in result.stderr  # the warning names what is missing



def test_composerag_run_prints_console_spans_with_the_real_model(demo_index):
    """The README's example: the CLI loads the model on a thread while the graph compiles,
    and llama.cpp silences stdout meanwhile; the spans still reach the terminal."""
    result = run_python("", {"OTEL_TRACES_EXPORTER": "console"}, "-m", "compose.cli", "run",
                        "naive_rag", "-q", QUESTION, "--index", str(demo_index))
    # The batch exporter flushes on its own schedule (5 s), so on a busy machine a span may be
    # printed before the answer; the answer line is there either way.
    assert any(line.startswith("answer: ") for line in result.stdout.splitlines())
    for name in ("invoke_workflow naive_rag", "node retrieve", "node answer",
                 "chat smollm2-135m"):
        assert f'"name": "{name}"' in result.stdout

"""Token streaming of the final answer: the JSON field extractor, the generators' ``on_text``
(the real embedded model through llama.cpp, transformers and an OpenAI-compatible server),
the graph's ``tokens`` stream mode, the service's token events and the terminal runner."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
from dataclasses import replace

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from compose.api import load_graph
from compose.cli.stream import run_streaming
from compose.config import CacheConfig, GeneratorConfig, RetrieverConfig, RuntimeConfig
from compose.corpora.demo import load_demo
from compose.generators.base import GenerationError, Message, TextStream
from compose.generators.factory import get_generator
from compose.generators.fast_gguf import derived_gguf
from compose.generators.models import resolve_gguf
from compose.generators.openai_compat import OpenAICompatGenerator
from compose.graph.compiler import answer_streams_live
from compose.graph.load import load_resolved
from compose.graph.spec import EdgeSpec, GraphSpec, NodeSpec
from compose.graph.validate import resolve_spec
from compose.modules.answer import EmittedAnswer
from compose.runtime import Runtime
from compose.serve.service import GraphService
from compose.streaming import FieldStream, TokenSink
from compose.structured import generate_structured
from compose.testing import ScriptedGenerator
from tests.conftest import answering, scripted_runtime
from tests.loopback import free_port
from tests.test_generators import QUESTION, wait_until_up

# The demo question with the longest gold answer ("Halvorre Symphony Orchestra").
LONG_ANSWER = next(q.question for q in load_demo().questions if q.id == "dq-06")


def streamed(field: str, pieces: list[str]) -> str:
    extractor = FieldStream(field)
    return "".join(extractor.feed(piece) for piece in pieces)


def chop(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


# --- the extractor --------------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                          max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(answer=st.text(), others=st.dictionaries(st.text(max_size=8), json_value, max_size=4),
       position=st.integers(0, 4), ensure_ascii=st.booleans(),
       indent=st.none() | st.integers(0, 2), cuts=st.lists(st.integers(0, 400), max_size=30))
def test_extractor_streams_exactly_the_stripped_field(answer, others, position, ensure_ascii,
                                                      indent, cuts):
    items = [(k, v) for k, v in others.items() if k != "answer"]
    items.insert(min(position, len(items)), ("answer", answer))
    text = json.dumps(dict(items), ensure_ascii=ensure_ascii, indent=indent)
    assert streamed("answer", chop(text, cuts)) == json.loads(text)["answer"].strip()


@pytest.mark.parametrize("text", [
    '{"answer": "  Ilse \\"the\\" Ranneth\\n ", "citations": [1]}',
    '{"citations": [{"answer": "nested"}], "note": "answer", '
    '"answer": "caf\\u00e9 \\ud83d\\ude00"}',
    'Sure! Here it is: ```json\n{"answer":"\\t\\u0020x\\\\y/\\/ "}```',
    '{"answer": "\\ud83d alone", "x": 1}',
])
def test_extractor_handles_escapes_split_anywhere(text):
    expected = json.loads(text[text.index("{"):text.rindex("}") + 1])["answer"].strip()
    for cut in range(len(text) + 1):
        assert streamed("answer", [text[:cut], text[cut:]]) == expected
    assert streamed("answer", list(text)) == expected


def test_extractor_holds_trailing_spaces_until_more_text():
    extractor = FieldStream("answer")
    assert extractor.feed('{"answer": " Ilse ') == "Ilse"
    assert extractor.feed(" ") == ""
    assert extractor.feed("R") == "  R"
    assert extractor.feed('anneth  ", "citations": [1]}') == "anneth"
    assert extractor.done


def test_extractor_ignores_other_fields_and_non_strings():
    assert streamed("answer", ['{"answer": 3, "reason": "x"}']) == ""
    assert streamed("answer", ['{"question": "answer", "other": "answer"}']) == ""


# --- generator-level streaming --------------------------------------------------------------

def test_text_stream_holds_a_possible_stop_string_and_split_characters():
    pieces: list[str] = []
    stream = TextStream(pieces.append, stop=["<|im_end|>"])
    stream.update("Ilse <|im")
    assert pieces == ["Ilse "]
    stream.update("Ilse <|im_e\ufffd")
    stream.update("Ilse <|imp é")
    assert pieces == ["Ilse ", "<|imp é"]
    stream.update("Ilse <|imp é<|im_end|>tail")  # nothing after a complete stop string
    stream.finish("Ilse <|imp é")
    assert "".join(pieces) == "Ilse <|imp é"
    with pytest.raises(GenerationError, match="changed after it was streamed"):
        stream.finish("something else")


@pytest.fixture(scope="module")
def llama():
    return get_generator(GeneratorConfig())


MULTIBYTE = [Message(role="user", content="Repeat exactly this text: café, naïve, 日本語, 😀🎉")]


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_llama_cpp_streams_whole_characters_that_add_up_to_the_text(llama, temperature):
    pieces: list[str] = []
    generation = llama.generate(MULTIBYTE, max_tokens=40, temperature=temperature,
                                on_text=pieces.append)
    assert "".join(pieces) == generation.text and len(pieces) > 1
    assert not generation.text.isascii()  # the embedded model answers in multi-byte text
    assert all("\ufffd" not in piece for piece in pieces)
    if temperature == 0.0:  # greedy: the same reply as without streaming
        assert llama.generate(MULTIBYTE, max_tokens=40).text == generation.text
        # characters whose bytes span two tokens come out whole, as one piece
        assert len(pieces) < generation.tokens_out


def test_transformers_streams_pieces_that_add_up_to_the_text():
    generator = get_generator(GeneratorConfig(backend="transformers"))
    pieces: list[str] = []
    generation = generator.generate(QUESTION, max_tokens=16, on_text=pieces.append)
    assert "".join(pieces) == generation.text and len(pieces) > 1
    assert generator.generate(QUESTION, max_tokens=16).text == generation.text


@pytest.fixture(scope="module")
def llama_server():
    """The embedded model behind llama-cpp-python's OpenAI-compatible server, run from the
    fast-format copy the llama_cpp backend runs (on this machine the shipped Q4_1 file dies
    with SIGILL in the AMX kernels llama.cpp picks for it)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "compose.generators.llama_server",
         "--model", str(derived_gguf(resolve_gguf("smollm2-135m"), "auto")),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--model_alias", "smollm2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_up(process, base)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_openai_compatible_server_streams_server_sent_events(llama_server):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    generator = OpenAICompatGenerator([dead, llama_server], "smollm2", timeout_s=60,
                                      response_format="json_object")
    pieces: list[str] = []
    parsed, generation, _ = generate_structured(
        generator, QUESTION, EmittedAnswer, max_tokens=64, max_retries=0,
        stream_to=lambda: pieces.append)
    assert "".join(pieces) == generation.text and len(pieces) > 3
    assert "Ranneth" in parsed.answer
    assert generation.tokens_in > 0 and generation.tokens_out > 3
    assert generator.failed == {dead: 1}  # skipped before any text, like a plain call
    plain, _, _ = generate_structured(generator, QUESTION, EmittedAnswer, max_tokens=64,
                                      max_retries=0)
    assert plain == parsed  # temperature 0: streaming changes nothing


def sse(*chunks: dict) -> list[bytes]:
    return [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]


def delta(text: str) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


def scripted_replicas(*streams) -> OpenAICompatGenerator:
    """A generator whose replicas answer from in-process byte streams (no sockets)."""
    urls = [f"http://replica-{i}/v1" for i in range(len(streams))]
    generator = OpenAICompatGenerator(urls, "m")
    generator.clients = [
        httpx.Client(base_url=url, transport=httpx.MockTransport(
            lambda request, body=body: httpx.Response(200, content=body())))
        for url, body in zip(urls, streams, strict=True)]
    return generator


def test_streamed_usage_is_read_and_a_mid_stream_failure_is_not_retried():
    usage = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}

    def complete():
        yield from sse(delta("Ilse"), delta(" Ranneth"), usage)
        yield b"data: [DONE]\n\n"

    def broken():
        yield from sse(delta("Ils"))
        raise httpx.ReadError("connection reset")

    pieces: list[str] = []
    generation = scripted_replicas(complete).generate(QUESTION, on_text=pieces.append)
    assert pieces == ["Ilse", " Ranneth"] and generation.text == "Ilse Ranneth"
    assert (generation.tokens_in, generation.tokens_out) == (7, 2)
    generator = scripted_replicas(broken, complete)
    with pytest.raises(GenerationError, match="replica-0/v1 failed mid-stream"):
        generator.generate(QUESTION, on_text=pieces.append)
    assert generator.served == {} and len(generator.failed) == 1


# --- graph-level streaming (control flow, scripted model) -----------------------------------

def token_text(events: list[dict], node: str = "answer") -> str:
    """What a consumer shows for ``node``: its pieces since the last reset."""
    shown = ""
    for event in events:
        if event.get("node") == node and event["event"] == "token_reset":
            shown = ""
        elif event.get("node") == node and event["event"] == "token":
            shown += event["text"]
    return shown


def test_tokens_arrive_between_the_retrieve_and_answer_node_events(demo_index):
    graph = load_graph("naive_rag", runtime=scripted_runtime(answering("  Caskel town "),
                                                             demo_index))
    events = list(graph.stream({"question": "Who invented the kelp-oil lamp?"},
                               stream_mode="tokens"))
    kinds = [(e["event"], e["node"]) for e in events]
    tokens = [i for i, kind in enumerate(kinds) if kind == ("token", "answer")]
    assert kinds[0] == ("node", "retrieve") and kinds[-1] == ("node", "answer")
    assert len(tokens) > 1 and tokens == list(range(1, len(kinds) - 1))
    assert token_text(events) == events[-1]["update"]["answer"] == "Caskel town"
    assert graph.answer_streams_live
    # the other stream modes are unchanged
    assert [list(chunk) for chunk in graph.stream({"question": "q"})] == [["retrieve"],
                                                                          ["answer"]]


def test_a_traced_run_streams_through_the_traced_generator(demo_index):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from compose import telemetry

    exporter, provider = InMemorySpanExporter(), TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_tracer_provider(provider)
    try:
        graph = load_graph("naive_rag", runtime=scripted_runtime(answering("Caskel"),
                                                                 demo_index))
    finally:
        telemetry.use_tracer_provider(None)
    events = list(graph.stream({"question": "q"}, stream_mode="tokens"))
    provider.shutdown()
    assert token_text(events) == "Caskel" and len(events) > 3
    assert "chat smollm2-135m" in [span.name for span in exporter.get_finished_spans()]


def test_a_parse_retry_resets_the_streamed_tokens(demo_index):
    replies = ['{"answer": "wrong', '{"answer": "Caskel", "citations": [1]}']
    graph = load_graph("naive_rag", runtime=scripted_runtime(replies, demo_index,
                                                             supports_json_schema=False))
    events = list(graph.stream({"question": "q"}, stream_mode="tokens"))
    kinds = [e["event"] for e in events]
    assert kinds.count("token_reset") == 1
    before = events[:kinds.index("token_reset")]
    assert token_text(before) == "wrong"
    assert token_text(events) == events[-1]["update"]["answer"] == "Caskel"


def test_a_cache_hit_streams_the_cached_answer_as_one_piece(demo_index, tmp_path):
    config = RuntimeConfig(retriever=RetrieverConfig(index=str(demo_index)),
                           cache=CacheConfig(enabled=True, path=str(tmp_path / "c.sqlite")))
    generator = ScriptedGenerator(answering("Doran Vesk"))
    graph = load_graph("naive_rag", runtime=Runtime(config, generator=generator))
    first = list(graph.stream({"question": "q"}, stream_mode="tokens"))
    again = list(graph.stream({"question": "q"}, stream_mode="tokens"))
    assert len(generator.calls) == 1
    assert len([e for e in first if e["event"] == "token"]) > 1
    assert [e for e in again if e["event"] == "token"] == [
        {"event": "token", "node": "answer", "text": "Doran Vesk"}]


def synthesis_graph(params: dict) -> GraphSpec:
    return GraphSpec(name="synth", entry="synthesize", inputs=["question", "hops"],
                     outputs=["answer", "citations"],
                     nodes={"synthesize": NodeSpec(module="synthesize", params=params)},
                     edges=[EdgeSpec(source="synthesize", to="END")])


def hop(answer: str) -> dict:
    passage = {"id": f"p-{answer}", "title": answer, "text": f"It was {answer}."}
    return {"sub_question": "?", "question": "?", "answer": answer, "grounded": True,
            "citations": [passage["id"]], "passages": [passage]}


def test_synthesis_streams_through_the_answer_module_it_calls():
    graph = load_graph(synthesis_graph({"reader": "passages", "policy": "never"}),
                       runtime=scripted_runtime(answering("Caskel Lighthouse")))
    events = list(graph.stream({"question": "q", "hops": [hop("a"), hop("b")]},
                               stream_mode="tokens"))
    tokens = [e for e in events if e["event"] == "token"]
    assert len(tokens) > 1
    assert token_text(events, "synthesize") == events[-1]["update"]["answer"]
    assert events[-1]["update"]["answer"] == "Caskel Lighthouse"


def test_an_answer_made_without_a_call_arrives_whole_when_the_node_ends():
    generator = ScriptedGenerator([])
    graph = load_graph(synthesis_graph({}), runtime=Runtime(RuntimeConfig(),
                                                            generator=generator))
    events = list(graph.stream({"question": "q", "hops": [hop("Semmel Park")]},
                               stream_mode="tokens"))
    assert generator.calls == []  # the one-hop shortcut
    assert events[:-1] == [{"event": "token", "node": "synthesize", "text": "Semmel Park"}]


def test_token_sink_settles_to_the_final_answer():
    events: list[dict] = []
    sink = TokenSink("answer", events.append)
    sink.attempt("answer")('{"answer": "Ilse Ran')
    sink.settle("Ilse Ranneth")  # streamed text is a prefix: only the rest is sent
    sink.settle("unknown")       # anything else: reset, then the answer whole
    assert [e["event"] for e in events] == ["token", "token", "token_reset", "token"]
    assert token_text(events) == "unknown"


def test_answer_streams_live_only_when_no_answer_writer_can_run_again():
    assert answer_streams_live(load_resolved("naive_rag"))
    assert answer_streams_live(load_resolved("compose_rag"))  # hop answers loop; synthesis not
    assert not answer_streams_live(load_resolved("iterative_rag"))  # the answer node loops
    assert not answer_streams_live(load_resolved("moi_rag"))  # two nodes write the answer
    synthesis = resolve_spec(synthesis_graph({}))  # then without the answer output:
    assert not answer_streams_live(replace(synthesis, spec=synthesis.spec.model_copy(
        update={"outputs": ["x"]})))


def test_astream_tokens_mode_with_other_modes(demo_index):
    graph = load_graph("naive_rag", runtime=scripted_runtime(answering("Caskel"), demo_index))

    async def collect():
        return [item async for item in graph.astream({"question": "q"},
                                                     stream_mode=["tokens", "values"])]

    items = asyncio.run(collect())
    assert {mode for mode, _ in items} == {"tokens", "values"}
    assert token_text([event for mode, event in items if mode == "tokens"]) == "Caskel"
    assert items[-1][0] == "values" and items[-1][1]["answer"] == "Caskel"


def test_terminal_run_prints_tokens_live_and_progress_apart(demo_index):
    graph = load_graph("naive_rag", runtime=scripted_runtime(answering("Caskel"), demo_index))
    tokens, progress = io.StringIO(), io.StringIO()
    state = run_streaming(graph, {"question": "q"}, tokens_to=tokens,
                          progress=Console(file=progress, width=100))
    assert tokens.getvalue() == "Caskel\n"
    lines = progress.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["node retrieve", "node answer"]
    assert "1 LLM call" in lines[1]
    assert state["answer"] == "Caskel" and len(state["trace"]) == 2


# --- the real embedded model ----------------------------------------------------------------

@pytest.fixture(scope="module")
def real_rag(demo_index):
    return load_graph("naive_rag", index=demo_index, cache=False)


def test_real_model_streams_the_answer_before_the_node_finishes(real_rag):
    plain = real_rag.invoke({"question": LONG_ANSWER})["answer"]
    started = time.perf_counter()
    stamped = [(time.perf_counter() - started, event)
               for event in real_rag.stream({"question": LONG_ANSWER}, stream_mode="tokens")]
    events = [event for _, event in stamped]
    token_times = [t for t, e in stamped if e["event"] == "token"]
    retrieved, answered = (t for t, e in stamped if e["event"] == "node")
    assert token_text(events) == plain == events[-1]["update"]["answer"]
    assert "token_reset" not in [e["event"] for e in events]
    assert len(token_times) > 1
    # Each piece is its own decode step (10-20 ms on this machine); had the pieces been
    # sent when the reply was complete they would lie within a millisecond of each other.
    assert token_times[-1] - token_times[0] >= 0.02
    # The answer is written first and the citations after it: the first piece comes while
    # much of the node's work is still to run. The plain run just before left this prompt's
    # KV state, so the node is mostly decoding here: the first piece came 65-75% of the
    # node's time before its end. (On a new prompt prefill dominates, and the first piece
    # comes about 20% of the node's time before its end.)
    assert answered - token_times[0] >= 0.3 * (answered - retrieved)


def test_service_stream_carries_token_events_in_order(real_rag):
    service = GraphService(real_rag, timeout_s=120)

    async def collect(tokens: bool):
        request = service.Request(question=LONG_ANSWER)
        return [event async for event in service.stream(request, tokens=tokens)]

    events = asyncio.run(collect(True))
    kinds = [(e["event"], e.get("node")) for e in events]
    assert kinds[0] == ("node", "retrieve")
    assert kinds[-2:] == [("node", "answer"), ("end", None)]
    assert set(kinds[1:-2]) == {("token", "answer")} and len(kinds) > 4
    assert token_text(events) == events[-1]["output"]["answer"]
    assert events[-2]["update"]["answer"] == events[-1]["output"]["answer"]
    assert [e["event"] for e in asyncio.run(collect(False))] == ["node", "node", "end"]

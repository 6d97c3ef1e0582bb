"""The OpenAI-compatible routes, driven by the real ``openai`` client over loopback: models
list, completions with sources and the structured outputs, streaming in the chunk format,
earlier turns for graphs that take a history, errors in OpenAI's shape, and a bounded load
of concurrent streaming clients."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from compose.api import load_graph
from compose.config import RetrieverConfig, RuntimeConfig
from compose.graph.load import load_spec
from compose.graph.spec import EdgeSpec, GraphSpec, NodeSpec
from compose.runtime import Runtime
from compose.serve.http_app import create_app
from compose.serve.openai_api.chat import chat_graph
from compose.serve.openai_api.schema import ChatMessage
from compose.serve.service import GraphService
from compose.testing import ScriptedGenerator
from tests.conftest import answering, retry_spec, scripted_runtime
from tests.loopback import serving

QUESTION = "Who invented the kelp-oil lamp?"

CHAT_RAG = """
name: chat_rag
description: Retrieve on the conversation so far, answer the last question.
inputs: [question, history]
outputs: [answer, citations, passages]
entry: retrieve
nodes:
  retrieve:
    module: retrieve
    params: {k: 2}
    inputs: {query: history}
  answer:
    module: answer
edges:
  - {from: retrieve, to: answer}
  - {from: answer, to: END}
"""


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def client_of(url: str) -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def read_stream(stream) -> tuple[list, str]:
    """The chunks of a stream, checked for the chunk format; and the content they add up
    to. Well-formed: one id; the role first; content deltas; exactly one finishing chunk,
    after every content delta; only a usage chunk after it."""
    chunks = list(stream)
    assert chunks, "empty stream"
    assert {c.id for c in chunks} == {chunks[0].id}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [i for i, c in enumerate(chunks) if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and chunks[finishing[0]].choices[0].finish_reason == "stop"
    assert all(not c.choices for c in chunks[finishing[0] + 1:])
    content = "".join(c.choices[0].delta.content or "" for c in chunks[:finishing[0]])
    return chunks, content


@pytest.fixture(scope="module")
def real_url(real_runtime):
    graph = load_graph("naive_rag", runtime=real_runtime)
    with serving(create_app([graph], timeout_s=300)) as url:
        yield url


@pytest.fixture(scope="module")
def chat_app(demo_index, tmp_path_factory):
    """Scripted graphs: a live-streaming RAG, a looping one, one taking a history, a slow
    one (past the 0.5 s deadline), a broken one, and one with no answer to chat with."""
    path = tmp_path_factory.mktemp("graphs") / "chat_rag.yaml"
    path.write_text(CHAT_RAG)
    broken = load_spec("closed_book").model_copy(update={"name": "broken"})
    retrieval_only = GraphSpec(
        name="retrieval_only", entry="retrieve", outputs=["passages"],
        nodes={"retrieve": NodeSpec(module="retrieve", inputs={"query": "question"})},
        edges=[EdgeSpec(source="retrieve", to="END")])
    graphs = {
        "naive_rag": load_graph("naive_rag",
                                runtime=scripted_runtime(answering("Caskel"), demo_index)),
        "retry_rag": load_graph(retry_spec(1),
                                runtime=scripted_runtime(answering("Caskel"), demo_index)),
        "chat_rag": load_graph(path, runtime=scripted_runtime(answering("Ilsa"), demo_index)),
        "closed_book": load_graph("closed_book",
                                  runtime=scripted_runtime(answering("slowly", 2.0))),
        "broken": load_graph(broken, runtime=scripted_runtime(lambda m: "not json at all")),
        "retrieval_only": load_graph(retrieval_only,
                                     runtime=scripted_runtime(answering("-"), demo_index)),
    }
    with serving(create_app(graphs.values(), timeout_s=0.5, max_body_bytes=4096)) as url:
        yield url, graphs


# -- the real embedded model ----------------------------------------------------------------

def test_the_real_model_answers_with_sources_and_streams_the_same_message(real_url):
    client = client_of(real_url)
    assert [m.id for m in client.models.list()] == ["naive_rag"]
    first = client.chat.completions.create(model="naive_rag", messages=ask(QUESTION))
    content = first.choices[0].message.content
    run = first.composerag  # an extra field: the client keeps it
    assert run == first.model_extra["composerag"] and run["graph"] == "naive_rag"
    output = run["output"]
    assert output["answer"].strip() and content.startswith(output["answer"])
    assert output["citations"], "the model cited no passage"
    titles = {p["id"]: p["title"] for p in output["passages"]}
    assert content.endswith("Sources: " + "; ".join(
        f"{titles[c]} ({c})" for c in output["citations"]))
    assert first.usage.prompt_tokens > 100 and first.usage.completion_tokens > 0
    assert first.choices[0].finish_reason == "stop"

    # llama.cpp may decode a prompt seen for the first time slightly differently from one
    # whose prefix it holds, so the stream is compared with a warm non-streamed run.
    warm = client.chat.completions.create(model="naive_rag", messages=ask(QUESTION))
    chunks, streamed = read_stream(client.chat.completions.create(
        model="naive_rag", messages=ask(QUESTION), stream=True))
    assert streamed == warm.choices[0].message.content
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in chunks) > 2  # live
    assert chunks[-1].composerag["output"] == warm.composerag["output"]


# -- completions and streams ----------------------------------------------------------------

def test_only_graphs_that_fit_a_chat_are_models(chat_app):
    url, _ = chat_app
    client = client_of(url)
    assert [m.id for m in client.models.list()] == [
        "naive_rag", "retry_rag", "chat_rag", "closed_book", "broken"]
    card = client.models.retrieve("naive_rag")
    assert card.owned_by == "composerag" and "Retrieve" in card.description
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("retrieval_only")
    assert "no 'answer' output" in raised.value.message
    assert raised.value.code == "model_not_found"


def test_a_completion_carries_the_answer_its_sources_and_the_outputs(chat_app):
    url, _ = chat_app
    reply = client_of(url).chat.completions.create(model="naive_rag", messages=ask(QUESTION))
    output = reply.composerag["output"]
    first = output["passages"][0]
    assert output["citations"] == [first["id"]]
    assert reply.choices[0].message.content == (
        f"Caskel\n\nSources: {first['title']} ({first['id']})")
    assert reply.model == "naive_rag" and reply.id.startswith("chatcmpl-")
    # ScriptedGenerator counts words: the reply {"answer": "Caskel", "citations": [1]}.
    assert reply.usage.completion_tokens == 4
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 4


def test_a_live_answer_streams_token_by_token_and_adds_up_to_the_message(chat_app):
    url, _ = chat_app
    client = client_of(url)
    whole = client.chat.completions.create(model="naive_rag", messages=ask(QUESTION))
    chunks, content = read_stream(client.chat.completions.create(
        model="naive_rag", messages=ask(QUESTION), stream=True,
        stream_options={"include_usage": True}))
    assert content == whole.choices[0].message.content
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and
              c.choices[0].delta.content]
    assert pieces[:2] == ["Cas", "kel"]  # the scripted model's pieces, as generated
    assert chunks[-1].usage.model_dump(exclude_none=True) == whole.usage.model_dump(
        exclude_none=True)
    assert chunks[-2].composerag["output"] == whole.composerag["output"]


def test_a_looping_graph_streams_node_comments_then_the_whole_message(chat_app):
    url, graphs = chat_app
    assert not graphs["retry_rag"].answer_streams_live
    body = {"model": "retry_rag", "messages": ask(QUESTION), "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in reply.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    comments = [line for line in lines if line.startswith(":")]
    assert comments == [": node retrieve done", ": node answer done"]
    chunks = [json.loads(line[len("data: "):]) for line in lines[:-1] if line.startswith("data")]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""} and deltas[-1] == {}
    assert len(deltas) == 3 and lines.index(comments[-1]) < lines.index(
        "data: " + json.dumps(chunks[1], ensure_ascii=False))
    whole = client_of(url).chat.completions.create(model="retry_rag", messages=ask(QUESTION))
    assert deltas[1]["content"] == whole.choices[0].message.content


def test_earlier_turns_reach_a_graph_that_declares_a_history(chat_app):
    url, graphs = chat_app
    turns = [{"role": "user", "content": "Tell me about the kelp-oil lamp."},
             {"role": "assistant", "content": "It burns oil pressed from blue kelp."},
             {"role": "user", "content": "Who made it first?"}]
    client = client_of(url)
    reply = client.chat.completions.create(model="chat_rag", messages=turns)
    assert reply.composerag["output"]["passages"][0]["title"] == "Kelp-oil lamp"
    prompt = graphs["chat_rag"].runtime.generator.calls[-1][-1].content
    assert "Question: Who made it first?" in prompt
    request = chat_graph(GraphService(graphs["chat_rag"])).request(
        [ChatMessage.model_validate(turn) for turn in turns])
    assert request.model_dump() == {
        "question": "Who made it first?",
        "history": "user: Tell me about the kelp-oil lamp.\n"
                   "assistant: It burns oil pressed from blue kelp."}
    client.chat.completions.create(model="naive_rag", messages=turns)
    prompt = graphs["naive_rag"].runtime.generator.calls[-1][-1].content
    assert "Question: Who made it first?" in prompt and "Tell me" not in prompt
    with pytest.raises(openai.BadRequestError) as raised:  # this graph retrieves on history
        client.chat.completions.create(model="chat_rag", messages=turns[-1:])
    assert raised.value.param == "messages"
    assert "graph input 'history' (from the messages): String should have at least 1" in (
        raised.value.message)


def test_text_parts_are_joined_and_extra_fields_tolerated(chat_app):
    url, graphs = chat_app
    parts = [{"type": "text", "text": "Who invented"}, {"type": "text", "text": "the lamp?"}]
    reply = client_of(url).chat.completions.create(
        model="naive_rag", messages=[{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": parts}],
        temperature=0.3, max_tokens=5, user="someone", seed=1, extra_body={"foo": [1]})
    assert reply.choices[0].message.content.startswith("Caskel")
    prompt = graphs["naive_rag"].runtime.generator.calls[-1][-1].content
    assert "Question: Who invented\nthe lamp?" in prompt


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("messages", "extra", "param", "says"), [
    ([], {}, "messages", "at least 1 item"),
    ([{"role": "assistant", "content": "hi"}], {}, "messages", "not a 'assistant' message"),
    (ask("   "), {}, "messages", "no text"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], {},
     "messages.0.content", "not 'image_url'"),
    ([{"role": "wizard", "content": "hi"}], {}, "messages.0.role", "'user'"),
    (ask(QUESTION), {"n": 2}, "n", "1"),
])
def test_a_bad_request_is_an_openai_400(chat_app, messages, extra, param, says):
    url, _ = chat_app
    with pytest.raises(openai.BadRequestError) as raised:
        client_of(url).chat.completions.create(model="naive_rag", messages=messages,
                                               extra_body=extra)
    assert raised.value.body["type"] == "invalid_request_error"
    assert raised.value.param == param and says in raised.value.message


def test_an_unknown_model_is_model_not_found(chat_app):
    url, _ = chat_app
    with pytest.raises(openai.NotFoundError) as raised:
        client_of(url).chat.completions.create(model="gpt-4o", messages=ask(QUESTION))
    assert raised.value.code == "model_not_found" and raised.value.param == "model"
    assert "models: naive_rag, retry_rag" in raised.value.message


@pytest.mark.parametrize(("content", "content_type", "status", "says"), [
    (b"{not json", "application/json", 400, "JSON decode error"),
    (b'{"model": "naive_rag", "messages": [], "x": NaN}', "application/json", 400, "JSON"),
    (b"model=naive_rag", "application/x-www-form-urlencoded", 415, "must be JSON"),
    (json.dumps({"model": "naive_rag", "messages": ask("x" * 5000)}).encode(),
     "application/json", 413, "over 4096 bytes"),
])
def test_bodies_that_are_not_a_request_err_in_openai_shape(chat_app, content, content_type,
                                                            status, says):
    url, _ = chat_app
    reply = httpx.post(f"{url}/v1/chat/completions", content=content,
                       headers={"content-type": content_type})
    assert reply.status_code == status, reply.text
    assert says in reply.json()["error"]["message"]


def test_framework_errors_and_the_host_check_cover_the_v1_routes(chat_app):
    url, _ = chat_app
    missing = httpx.get(f"{url}/v1/embeddings")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"
    wrong_method = httpx.get(f"{url}/v1/chat/completions")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    foreign = httpx.post(f"{url}/v1/chat/completions", headers={"host": "evil.example"},
                         json={"model": "naive_rag", "messages": ask(QUESTION)})
    assert foreign.status_code == 421
    assert httpx.get(f"{url}/graphs/nothing").json() == {"detail": "Not Found"}


def test_timeouts_and_node_failures_have_openai_statuses(chat_app):
    url, _ = chat_app
    client = client_of(url)
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="closed_book", messages=ask(QUESTION))
    assert raised.value.status_code == 504 and raised.value.code == "timeout"
    assert "within 0.5 s" in raised.value.message
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="broken", messages=ask(QUESTION))
    assert raised.value.status_code == 500 and raised.value.code == "graph_failed"
    assert "node 'answer'" in raised.value.message


def test_a_failure_mid_stream_ends_it_with_an_error_event(chat_app):
    url, _ = chat_app
    client = client_of(url)
    for model, says in [("closed_book", "within 0.5 s"), ("broken", "node 'answer'")]:
        stream = client.chat.completions.create(model=model, messages=ask(QUESTION),
                                                stream=True)
        with pytest.raises(openai.APIError) as raised:
            list(stream)
        assert says in raised.value.message
    body = {"model": "broken", "messages": ask(QUESTION), "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as reply:
        data = [line for line in reply.iter_lines() if line.startswith("data:")]
    assert json.loads(data[-1][len("data: "):])["error"]["type"] == "server_error"
    assert "data: [DONE]" not in data


class SmallContext(ScriptedGenerator):
    """A scripted model that reports a context of 50 tokens (words, for this tokenizer)."""

    def context_size(self) -> int:
        return 50


def test_a_question_over_the_context_is_context_length_exceeded(demo_index):
    generator = SmallContext(answering("Caskel"))
    runtime = Runtime(RuntimeConfig(retriever=RetrieverConfig(index=str(demo_index))),
                      generator=generator)
    with serving(create_app([load_graph("naive_rag", runtime=runtime)])) as url:
        client = client_of(url)
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as raised:
                client.chat.completions.create(model="naive_rag", messages=ask("why " * 60),
                                               stream=stream)
            assert raised.value.code == "context_length_exceeded"
            assert "context holds 50 tokens" in raised.value.message
    assert generator.calls == []


@pytest.mark.parametrize(("first_reply", "ends"), [
    ('{"answer": "Wrong', "error"),  # streamed text the retried answer does not begin with
    ('{"answer": "Caskel', "message"),  # the retry restates what was already streamed
])
def test_a_retried_answer_never_leaves_the_client_holding_wrong_text(demo_index, first_reply,
                                                                      ends):
    replies = [first_reply, {"answer": "Caskel", "citations": [1]}]
    graph = load_graph("naive_rag", runtime=scripted_runtime(replies, demo_index))
    with serving(create_app([graph])) as url:
        stream = client_of(url).chat.completions.create(model="naive_rag",
                                                        messages=ask(QUESTION), stream=True)
        if ends == "error":
            with pytest.raises(openai.APIError) as raised:
                list(stream)
            assert raised.value.code == "answer_revised"
            return
        chunks, content = read_stream(stream)
    passage = chunks[-1].composerag["output"]["passages"][0]
    assert content == f"Caskel\n\nSources: {passage['title']} ({passage['id']})"


# -- bounded load ---------------------------------------------------------------------------

def test_twenty_streamed_completions_over_four_concurrent_clients(demo_index):
    def echo(messages):
        time.sleep(0.02)
        question = messages[-1].content.split("Question: ")[-1].split("\n")[0]
        return {"answer": question.split()[-1].rstrip("?"), "citations": [1]}

    graph = load_graph("naive_rag", runtime=scripted_runtime(echo, demo_index))
    questions = [f"Which lamp is number{n}?" for n in range(20)]
    errors: list[str] = []
    answers: dict[str, str] = {}

    async def load(url: str) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for question in questions:
            queue.put_nowait(question)
        client = AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)

        async def worker() -> None:
            while not queue.empty():
                question = queue.get_nowait()
                try:
                    stream = await client.chat.completions.create(
                        model="naive_rag", messages=ask(question), stream=True)
                    chunks = [chunk async for chunk in stream]
                    _, content = read_stream(chunks)
                    answers[question] = content
                except (openai.APIError, AssertionError) as exc:
                    errors.append(f"{question}: {exc!r}")

        await asyncio.gather(*(worker() for _ in range(4)))
        await client.close()

    with serving(create_app([graph])) as url:
        asyncio.run(load(url))
    assert errors == []
    assert len(answers) == 20
    for question, content in answers.items():
        assert content.startswith(question.split()[-1].rstrip("?") + "\n\nSources: ")

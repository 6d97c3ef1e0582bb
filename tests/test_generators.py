"""Each generator backend against a real model: llama.cpp (GGUF), transformers (fp32 and INT8,
from the same GGUF), and an OpenAI-compatible server on loopback."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from compose.config import GeneratorConfig
from compose.generators.base import GenerationError, Message
from compose.generators.factory import get_generator
from compose.generators.models import resolve_gguf
from compose.generators.openai_compat import OpenAICompatGenerator
from compose.modules.answer import EmittedAnswer
from compose.structured import generate_structured
from tests.loopback import free_port

QUESTION = [
    Message(role="system", content="Answer with a short phrase."),
    Message(role="user", content="Passages:\n[1] Velmora Bridge: The Velmora Bridge was "
            "designed by the engineer Ilse Ranneth.\n\nQuestion: Who designed the Velmora "
            "Bridge?\nGive the short answer as JSON."),
]


@pytest.fixture(scope="module")
def llama():
    return get_generator(GeneratorConfig())


def test_llama_cpp_schema_constrained_output_parses(llama):
    parsed, generation, retries = generate_structured(
        llama, QUESTION, EmittedAnswer, max_tokens=64, max_retries=0)
    assert generation.constrained and retries == 0
    assert isinstance(parsed, EmittedAnswer)
    assert "Ranneth" in parsed.answer
    assert generation.tokens_in > 40 and generation.tokens_out > 3
    assert generation.latency_s > 0
    assert generation.model.startswith("gguf:SmolLM2-135M-Instruct.Q4_1.")


def test_llama_cpp_is_deterministic_at_temperature_zero(llama):
    a = llama.generate(QUESTION, max_tokens=16)
    b = llama.generate(QUESTION, max_tokens=16)
    assert a.text == b.text


def test_llama_cpp_sampled_logprobs_need_opt_in(llama):
    with pytest.raises(GenerationError, match="logprobs: true"):
        llama.generate(QUESTION, max_tokens=4, logprobs=True, temperature=0.7)


def test_llama_cpp_greedy_logprobs_come_without_logits_all(llama):
    generation = llama.generate(QUESTION, max_tokens=8, logprobs=True)
    assert not llama.logprobs_enabled
    assert len(generation.token_logprobs) == generation.tokens_out > 0
    assert all(lp <= 0 for lp in generation.token_logprobs)


def test_llama_cpp_logprobs_when_enabled():
    generator = get_generator(GeneratorConfig(logprobs=True, n_ctx=1024))
    generation = generator.generate(QUESTION, max_tokens=8, logprobs=True)
    assert generation.token_logprobs is not None
    assert len(generation.token_logprobs) == generation.tokens_out
    assert all(lp <= 0 for lp in generation.token_logprobs)


@pytest.mark.parametrize("schema", [EmittedAnswer.model_json_schema(), None])
def test_greedy_decoding_picks_what_llama_cpp_python_picks(llama, schema):
    """The grammar consulted only when the top token breaks it gives the same greedy text
    as llama-cpp-python's sampler, which masks the whole vocabulary at every step."""
    questions = [QUESTION, [Message(role="user", content="Name three rivers, as JSON.")],
                 [Message(role="system", content="You answer briefly."),
                  Message(role="user", content="What is 12 times 12? Reply as JSON.")]]
    for messages in questions:
        ours = llama.generate(messages, json_schema=schema, max_tokens=40)
        kwargs = {"response_format": {"type": "json_object", "schema": schema}} if schema else {}
        with llama.exclusive():
            theirs = llama.llama.create_chat_completion(
                messages=[m.model_dump() for m in messages], max_tokens=40, temperature=0.0,
                **kwargs)
        assert ours.text == theirs["choices"][0]["message"]["content"]
        assert ours.tokens_in == theirs["usage"]["prompt_tokens"]
        assert ours.tokens_out == theirs["usage"]["completion_tokens"]


def test_llama_cpp_counts_tokens(llama):
    assert llama.count_tokens("Velmora Bridge") >= 2


def test_prompt_longer_than_context_is_a_generation_error():
    generator = get_generator(GeneratorConfig(n_ctx=256))
    long = [Message(role="user", content="bridge " * 600)]
    with pytest.raises(GenerationError, match="llama.cpp"):
        generator.generate(long, max_tokens=4)


def test_unknown_model_name_is_clear():
    with pytest.raises(FileNotFoundError, match="smollm2-135m"):
        resolve_gguf("no-such-model")


@pytest.fixture(scope="module")
def transformers_fp32():
    return get_generator(GeneratorConfig(backend="transformers"))


def test_transformers_backend_runs_the_embedded_model(transformers_fp32):
    generation = transformers_fp32.generate(
        [Message(role="user", content="What is the capital of France? One word.")],
        max_tokens=8, logprobs=True)
    assert "Paris" in generation.text
    assert generation.tokens_out == len(generation.token_logprobs) > 0
    assert not transformers_fp32.supports_json_schema


def test_transformers_structured_output_goes_through_parse_retry(transformers_fp32):
    parsed, generation, retries = generate_structured(
        transformers_fp32, QUESTION, EmittedAnswer, max_tokens=48, max_retries=2)
    assert not generation.constrained
    assert isinstance(parsed, EmittedAnswer) and parsed.answer


def test_transformers_int8_quantizes_linear_layers_and_still_answers():
    import torch

    generator = get_generator(GeneratorConfig(backend="transformers", int8=True))
    assert generator.model_id.endswith("+int8")
    quantized = [m for m in generator.model.modules()
                 if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantized) > 50
    generation = generator.generate(
        [Message(role="user", content="What is the capital of France? Answer in one word.")],
        max_tokens=12)
    assert "Paris" in generation.text


def start_llama_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "compose.generators.llama_server",
         "--model", str(resolve_gguf("smollm2-135m")), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048",
         "--model_alias", "smollm2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}/v1"


def wait_until_up(process: subprocess.Popen, base: str) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail("llama_cpp.server exited early")
        try:
            if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    pytest.fail("llama_cpp.server did not come up in 120 s")


@pytest.fixture(scope="module")
def llama_servers():
    """Two replicas of the embedded model behind llama.cpp's OpenAI-compatible server."""
    started = [start_llama_server() for _ in range(2)]
    try:
        for process, base in started:
            wait_until_up(process, base)
        yield [base for _, base in started]
    finally:
        for process, _ in started:
            process.terminate()
            process.wait(timeout=30)


def test_openai_compatible_server_with_schema(llama_servers):
    generator = get_generator(GeneratorConfig(backend="openai", base_url=llama_servers[0],
                                              model="smollm2", response_format="json_object"))
    parsed, generation, _ = generate_structured(
        generator, QUESTION, EmittedAnswer, max_tokens=64, max_retries=0)
    assert "Ranneth" in parsed.answer
    assert generation.tokens_in > 40 and generation.model.startswith("openai:smollm2@")


def test_openai_compatible_server_unreachable_is_a_generation_error():
    generator = get_generator(GeneratorConfig(
        backend="openai", base_url=f"http://127.0.0.1:{free_port()}/v1", model="x",
        timeout_s=2))
    with pytest.raises(GenerationError, match="127.0.0.1"):
        generator.generate(QUESTION, max_tokens=4)


def test_replicas_take_turns_and_a_dead_one_is_skipped(llama_servers):
    first, second = llama_servers
    dead = f"http://127.0.0.1:{free_port()}/v1"
    generator = OpenAICompatGenerator([first, dead, second], "smollm2", timeout_s=30,
                                      response_format="json_object")
    texts = [generator.generate(QUESTION, max_tokens=8).text for _ in range(6)]
    # Turns go first, dead, second, ...; the dead replica's turns pass to the next one.
    assert generator.served == {first: 2, second: 4}
    assert generator.failed == {dead: 2}
    assert len(set(texts)) == 1  # the replicas serve the same model at temperature 0


def test_all_replicas_down_names_each_one():
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    generator = get_generator(GeneratorConfig(backend="openai", base_url=dead, model="x",
                                              timeout_s=2))
    with pytest.raises(GenerationError) as failure:
        generator.generate(QUESTION, max_tokens=4)
    assert all(url in str(failure.value) for url in dead)

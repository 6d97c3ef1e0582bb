"""Parse-retry for backends that cannot constrain, and the error when retries run out."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from compose.generators.base import Message
from compose.structured import StructuredOutputError, extract_json, generate_structured
from compose.testing import ScriptedGenerator


class Verdict(BaseModel):
    grounded: bool
    reason: str


ASK = [Message(role="user", content="Is it grounded?")]


def test_extracts_json_from_fences_and_chatter():
    assert extract_json('Sure! ```json\n{"a": 1}\n``` done') == '{"a": 1}'
    assert extract_json('The answer is {"a": {"b": 2}} ok') == '{"a": {"b": 2}}'


def test_unconstrained_backend_gets_example_and_retries_with_the_error():
    generator = ScriptedGenerator(
        ["I think yes", '{"grounded": true, "reason": "passage 1 says so"}'],
        supports_json_schema=False)
    parsed, _, retries = generate_structured(generator, ASK, Verdict, max_tokens=32,
                                             max_retries=2)
    assert parsed == Verdict(grounded=True, reason="passage 1 says so")
    assert retries == 1
    first_prompt = generator.calls[0][-1].content
    assert '"grounded": true' in first_prompt and '"reason": "<reason>"' in first_prompt
    retry_prompt = generator.calls[1][-1].content
    assert "That was not valid" in retry_prompt
    assert generator.calls[1][-2].content == "I think yes"


def test_failure_after_retries_is_reported_with_every_attempt():
    generator = ScriptedGenerator(['{"grounded": "maybe"}'] * 3)
    with pytest.raises(StructuredOutputError) as info:
        generate_structured(generator, ASK, Verdict, max_tokens=32, max_retries=2)
    assert len(info.value.attempts) == 3
    assert "grounded" in info.value.last_error
    assert "after 3 attempt(s)" in str(info.value)


def test_constrained_backend_sends_the_schema_not_an_example():
    seen = {}

    def reply(messages):
        return '{"grounded": false, "reason": "no"}'

    generator = ScriptedGenerator(reply)
    original = generator.generate

    def spy(messages, **kwargs):
        seen.update(kwargs)
        return original(messages, **kwargs)

    generator.generate = spy
    generate_structured(generator, ASK, Verdict, max_tokens=16, max_retries=0)
    assert seen["json_schema"]["required"] == ["grounded", "reason"]
    assert "JSON object" not in generator.calls[0][-1].content


def test_raw_control_characters_inside_strings_are_accepted():
    generator = ScriptedGenerator(['{"grounded": true, "reason": "line one\nline\ttwo"}'])
    parsed, _, retries = generate_structured(generator, ASK, Verdict, max_tokens=32,
                                             max_retries=0)
    assert parsed.reason == "line one\nline\ttwo" and retries == 0


def test_invalid_json_is_reported_with_position():
    generator = ScriptedGenerator(['{"grounded": tru'])
    with pytest.raises(StructuredOutputError, match="invalid JSON"):
        generate_structured(generator, ASK, Verdict, max_tokens=32, max_retries=0)

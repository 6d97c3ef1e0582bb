"""Getting a schema-valid pydantic object out of a generator.

Backends that constrain decoding to the JSON schema (llama.cpp grammars, servers that accept
``response_format``) produce parsable JSON by construction, though a too-small token budget can
still cut it off. Backends that cannot constrain get the schema in the prompt and a
parse-retry loop. Either way a failure is raised as :class:`StructuredOutputError` carrying
every raw attempt - never silently dropped.

``stream_to`` streams each attempt's reply while it is generated: it is called before every
attempt for that attempt's ``on_text`` callback, so a consumer can tell a retry's text from
the failed attempt's (``compose.streaming.TokenSink.attempt``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from compose.generators.base import Generation, Generator, Message

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class StructuredOutputError(RuntimeError):
    def __init__(self, schema_name: str, attempts: list[str], last_error: str) -> None:
        self.attempts = attempts
        self.last_error = last_error
        shown = attempts[-1][:300] if attempts else ""
        super().__init__(
            f"generator output did not match {schema_name} after {len(attempts)} attempt(s): "
            f"{last_error}; last output: {shown!r}"
        )


def extract_json(text: str) -> str:
    """The JSON object inside a reply that may carry fences or chatter around it."""
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    start = text.find("{")
    end = text.rfind("}")
    if start == -1 or end < start:
        return text.strip()
    return text[start : end + 1]


def _example_value(prop: dict[str, Any], name: str) -> object:
    kind = prop.get("type")
    if kind == "array":
        return [_example_value(prop.get("items", {}), name)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return True
    if kind == "object":
        return {}
    return f"<{name}>"


def schema_instruction(schema: dict[str, Any]) -> str:
    """Small models copy an example far better than they follow a JSON Schema (given the
    schema itself, they tend to echo it back), so the prompt shows an example object."""
    properties = schema.get("properties", {})
    example = {name: _example_value(prop, name) for name, prop in properties.items()}
    return (
        "Reply with one JSON object and nothing else, with these keys: "
        + json.dumps(example)
    )


def generate_structured(
    generator: Generator,
    messages: list[Message],
    output_model: type[BaseModel],
    *,
    max_tokens: int,
    max_retries: int,
    on_generation: Callable[[Generation], object] | None = None,
    stream_to: Callable[[], Callable[[str], None]] | None = None,
) -> tuple[BaseModel, Generation, int]:
    """Return (parsed object, the generation that produced it, retries used)."""
    schema = output_model.model_json_schema()
    constrained = generator.supports_json_schema
    convo = list(messages)
    if not constrained:
        convo[-1] = Message(role=convo[-1].role, content=convo[-1].content + "\n\n"
                            + schema_instruction(schema))
    attempts: list[str] = []
    last_error = ""
    for attempt in range(max_retries + 1):
        streaming: dict[str, Any] = {"on_text": stream_to()} if stream_to is not None else {}
        generation = generator.generate(
            convo,
            json_schema=schema if constrained else None,
            max_tokens=max_tokens * (attempt + 1),
            temperature=0.0 if attempt == 0 else 0.4,
            **streaming,
        )
        if on_generation is not None:
            on_generation(generation)
        attempts.append(generation.text)
        try:
            # strict=False: grammars let raw control characters (a newline, a tab) into
            # strings, which strict JSON rejects although the meaning is clear.
            data = json.loads(extract_json(generation.text), strict=False)
            return output_model.model_validate(data), generation, attempt
        except json.JSONDecodeError as exc:
            last_error = f"invalid JSON: {exc.msg} at character {exc.pos}"
        except ValidationError as exc:
            last_error = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'output'}: {err['msg']}"
                for err in exc.errors()[:3]
            )
        if not constrained:
            convo = [
                *messages[:-1],
                Message(role="user", content=convo[-1].content),
                Message(role="assistant", content=generation.text),
                Message(role="user", content=f"That was not valid: {last_error}. "
                        + schema_instruction(schema)),
            ]
    raise StructuredOutputError(output_model.__name__, attempts, last_error)

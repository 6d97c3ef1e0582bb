"""The subset of OpenAI's chat-completions protocol the graph routes speak.

Requests keep unknown fields (``extra="allow"``): OpenAI clients and chat UIs send many
(``temperature``, ``max_tokens``, ``user``, ``tools``, ``seed``...). None of them change a
graph run - a graph's generator settings live in its spec - so they are accepted and
ignored, except ``n``, which must be 1 because a graph gives one answer.

Message ``content`` is a string or a list of text parts (``[{"type": "text", "text":
...}]``, as vision-capable clients send); it is read as one string, parts joined by new
lines, and any other part (an image, audio) is refused by name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def text_of_parts(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        texts = []
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                raise ValueError(f"only text content parts are supported, not {kind!r} "
                                 "(a graph reads text)")
            texts.append(part["text"])
        return "\n".join(texts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, description="The name of a served graph.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = Field(default=1, description="A graph gives one answer.")


class RunInfo(BaseModel):
    """The run behind a completion: the graph's structured outputs, under ``composerag``."""

    graph: str
    output: dict[str, Any]
    elapsed_s: float


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    composerag: RunInfo


class ChunkChoice(BaseModel):
    index: int = 0
    delta: dict[str, str] = Field(description="role on the first chunk, then content pieces")
    finish_reason: Literal["stop"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    composerag: RunInfo | None = Field(default=None, description="On the finishing chunk.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "composerag"
    description: str = ""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]

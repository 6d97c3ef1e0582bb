"""Graph-level settings: which generator, which index, which cache.

They live in a graph's YAML (``generator:``, ``retriever:``, ``cache:``) and can be
overridden from the CLI or from Python, so the same graph runs on the embedded model, on any
GGUF file, on a transformers checkpoint or on an OpenAI-compatible server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_HOME = Path.home() / ".cache" / "composerag"


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in YAML must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class GeneratorConfig(StrictModel):
    backend: Literal["llama_cpp", "transformers", "openai"] = "llama_cpp"
    model: str = Field(
        default="smollm2-135m",
        description="A name from the model registry, a GGUF file path, an HF directory, "
        "or the served model name for an OpenAI-compatible server.",
    )
    base_url: str | list[str] | None = Field(
        default=None, description="OpenAI-compatible server URL, or a list of replicas "
        "serving the same model: calls go round-robin, and a replica that cannot be reached "
        "or answers 5xx is skipped for the next one.")
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the server's API key."
    )
    n_ctx: int = Field(default=4096, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    int8: bool = Field(default=False, description="transformers: INT8 dynamic quantization.")
    seed: int = 0
    timeout_s: float = Field(default=120.0, gt=0)
    max_parse_retries: int = Field(default=2, ge=0)
    logprobs: bool = Field(
        default=False,
        description="llama_cpp: keep logits for every position so token logprobs can be "
        "returned (costs memory: n_ctx x vocabulary floats).",
    )
    response_format: Literal["json_schema", "json_object"] = Field(
        default="json_schema",
        description="openai: how the schema is sent. 'json_schema' for OpenAI and vLLM, "
        "'json_object' (with an inline schema) for the llama.cpp Python server.",
    )


class RetrieverConfig(StrictModel):
    index: str | None = Field(default=None, description="Directory of a built index.")
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    k: int = Field(default=5, ge=1)
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    hnsw_ef_search: int = Field(
        default=128, ge=1, description="HNSW search breadth: higher is slower and more exact.")


class CacheConfig(StrictModel):
    enabled: bool = False
    path: str = str(DEFAULT_HOME / "cache.sqlite")


class RuntimeConfig(StrictModel):
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    retriever: RetrieverConfig = Field(default_factory=RetrieverConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)

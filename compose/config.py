"""Graph-level settings: which generator, which index, which cache.

They live in a graph's YAML (``generator:``, ``retriever:``, ``cache:``) and can be
overridden from the CLI or from Python, so the same graph runs on the embedded model, on any
GGUF file, on a transformers checkpoint or on an OpenAI-compatible server.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_HOME = Path.home() / ".cache" / "composerag"


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in YAML must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class GeneratorConfig(StrictModel):
    backend: str = Field(
        default="llama_cpp", description="llama_cpp, transformers, openai, or a backend an "
        "installed package registers (entry-point group composerag.backends).")
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
    n_threads: int | None = Field(
        default=None, ge=1, description="llama_cpp threads for prefill and decode alike; None "
        "is the cores this process may use (OMP_NUM_THREADS when set, as Ray sets it for a "
        "worker's share, else the CPU affinity mask).")
    fast_format: Literal["auto", "bf16", "q8_0", "f16", "q4_0", "iq4_nl", "none"] = Field(
        default="auto", description="llama_cpp, packaged models only: run a copy converted "
        "once to this type, which has a fast CPU path (the shipped Q4_1 has none). auto: "
        "bf16 where the CPU has BF16 dot products, else q8_0 (both keep the answers; q4_0 "
        "and iq4_nl are faster but lose some); none: the shipped file. A GGUF path is always "
        "used as given.")
    adapter: str = Field(
        default="auto", description="llama_cpp: a LoRA adapter applied to the model. 'auto' "
        "(the shipped tuned adapter on the embedded model it was trained for, none on other "
        "models); 'none'; 'tuned', the adapter shipped for the embedded model; or an adapter "
        ".gguf path "
        "(compose.tune.export writes one from a peft directory). Refused when its manifest "
        "names another base model; its sha256 is part of the model id, hence of cache keys.")
    merge_adapter: bool = Field(
        default=True, description="llama_cpp, packaged models: fold the adapter into the "
        "weights of the fast_format copy (once, cached), so no LoRA matmuls run per token "
        "(see compose.generators.lora_merge for what that saves); false applies it at "
        "run time. With fast_format none the adapter is always applied at run time.")
    flash_attn: bool = Field(default=True, description="llama_cpp: flash attention.")
    n_batch: int = Field(default=512, ge=32, description="llama_cpp: prompt tokens per decode.")
    n_ubatch: int = Field(default=512, ge=32, description="llama_cpp: physical batch size.")
    parallel_sequences: int = Field(
        default=1, ge=1, le=64, description="llama_cpp: short independent prompts (MoI's "
        "exploratory passes) decoded as up to this many parallel sequences of one batch. 1 "
        "(the default) runs them one after another, which measured as fast here, since "
        "prefill dominates (bench/generators.py).")
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

    @field_validator("backend")
    @classmethod
    def _registered_backend(cls, name: str) -> str:
        """A backend registered by the generators (read by name: they sit a layer above the
        config) or by a plugin; nothing is imported for a known one."""
        backends = import_module("compose.generators.factory").BACKENDS
        try:
            backends.check(name)
        except KeyError as exc:
            raise ValueError(f"{exc.args[0]} (known: {', '.join(backends.names())})") from None
        return name


EncoderRuntime = Literal["auto", "onnx", "torch"]


class RetrieverConfig(StrictModel):
    index: str | None = Field(default=None, description="Directory of a built index.")
    encoder_dir: str | None = Field(
        default=None, description="Encoder directory of an index built with `index build "
        "--encoder DIR`; a path stored in a manifest is never read.")
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    k: int = Field(default=5, ge=1)
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    hnsw_ef_search: int = Field(
        default=128, ge=1, description="HNSW search breadth: higher is slower and more exact.")
    encoder_runtime: EncoderRuntime = Field(
        default="auto",
        description="What embeds queries. 'onnx': onnxruntime, no torch import (the encoder "
        "is exported to ONNX once and cached under ~/.cache/composerag/onnx); 'torch': "
        "sentence-transformers; 'auto': $COMPOSERAG_ENCODER_RUNTIME if set, else ONNX when "
        "onnxruntime is installed, else torch. Vectors agree to within 1e-4, so an index "
        "built on either runtime serves both.")
    encoder_threads: int | None = Field(
        default=None, ge=1,
        description="onnxruntime intra-op threads for the encoder (default: all cores).")


class CacheConfig(StrictModel):
    enabled: bool = False
    path: str = str(DEFAULT_HOME / "cache.sqlite")


class RuntimeConfig(StrictModel):
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    retriever: RetrieverConfig = Field(default_factory=RetrieverConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)

"""How close LoRA training runs to this machine's fp32 matmul speed.

Training a frozen model with LoRA on the top L of N layers costs, per token, one forward
pass through all layers (2 FLOPs per weight) plus the backward pass of the activations
through the top L layers (about twice their forward); attention adds 4 * n_embd * context
per layer forward. The bound is a large fp32 matmul timed on the same threads, so the share
says how much of the hardware the training loop really uses.

Usage::

    share = training_efficiency(model.config, lora_layers=16, tokens=700_000,
                                mean_context=450, seconds=2800, threads=2)
"""

from __future__ import annotations

import time
from typing import Protocol

from pydantic import BaseModel


class Efficiency(BaseModel):
    flops_per_token: float
    achieved_gflops: float
    fp32_bound_gflops: float
    share_of_bound: float


class DecoderShape(Protocol):
    """The fields of a decoder's transformers config the count reads."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    num_hidden_layers: int


def layer_weights(config: DecoderShape) -> int:
    head_dim = config.hidden_size // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    attention = 2 * config.hidden_size * config.hidden_size + 2 * config.hidden_size * kv
    return attention + 3 * config.hidden_size * config.intermediate_size


def fp32_matmul_bound(threads: int, size: int = 2048, repeats: int = 8) -> float:
    """GFLOP/s of a square fp32 matmul on ``threads`` threads (best of ``repeats``)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / best / 1e9


def training_efficiency(config: DecoderShape, *, lora_layers: int | None, tokens: int,
                        mean_context: float, seconds: float, threads: int) -> Efficiency:
    n_layers = config.num_hidden_layers
    trained = min(lora_layers or n_layers, n_layers)
    per_layer = 2 * layer_weights(config) + 4 * config.hidden_size * mean_context
    flops = per_layer * n_layers + 2 * per_layer * trained
    achieved = flops * tokens / seconds / 1e9
    bound = fp32_matmul_bound(threads)
    return Efficiency(flops_per_token=flops, achieved_gflops=round(achieved, 1),
                      fp32_bound_gflops=round(bound, 1), share_of_bound=round(achieved / bound, 3))

"""Bench 9a: prefill and decode tokens/s per local generator backend on the default model,
next to this machine's measured fp32 matmul GFLOP/s and the implied share of the FLOP bound.

    python bench/generators.py [--prompt-tokens 512] [--decode-tokens 64] [--repeats 3]

Prefill of one token costs about 2 x parameters FLOPs; the table divides the achieved
prefill FLOP/s by the measured matmul FLOP/s. Decode is memory-bound, so its FLOP share is
expected to be far lower.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from compose.config import GeneratorConfig
from compose.generators.factory import get_generator

TEXT = ("The Velmora Bridge is an iron road bridge over the Aubeth River in the town of "
        "Velmora. It was designed by the engineer Ilse Ranneth and completed in 1872. ")


def matmul_gflops(size: int = 1024, repeats: int = 10) -> float:
    a = torch.randn(size, size, dtype=torch.float32)
    b = torch.randn(size, size, dtype=torch.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def numpy_gflops(size: int = 1024, repeats: int = 10) -> float:
    a = np.random.rand(size, size).astype(np.float32)
    b = np.random.rand(size, size).astype(np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_llama(prompt_tokens: int, decode_tokens: int, repeats: int) -> tuple[float, float]:
    generator = get_generator(GeneratorConfig(n_ctx=2048))
    llama = generator.llama
    tokens = llama.tokenize((TEXT * 40).encode())[:prompt_tokens]
    prefill, decode = [], []
    for _ in range(repeats):
        llama.reset()
        prefill.append(prompt_tokens / _timed(lambda: llama.eval(tokens)))
        started = time.perf_counter()
        for _ in range(decode_tokens):
            llama.eval([tokens[-1]])
        decode.append(decode_tokens / (time.perf_counter() - started))
    return statistics.median(prefill), statistics.median(decode)


def model_n_params() -> int:
    """From the GGUF metadata via llama.cpp; the same weights run on every backend here."""
    import llama_cpp

    llama = get_generator(GeneratorConfig(n_ctx=2048)).llama
    return int(llama_cpp.llama_model_n_params(llama.model))


def bench_transformers(int8: bool, prompt_tokens: int, decode_tokens: int,
                       repeats: int) -> tuple[float, float]:
    generator = get_generator(GeneratorConfig(backend="transformers", int8=int8))
    model, tokenizer = generator.model, generator.tokenizer
    ids = tokenizer((TEXT * 40), return_tensors="pt").input_ids[:, :prompt_tokens]
    prefill, decode = [], []
    with torch.inference_mode():
        for _ in range(repeats):
            started = time.perf_counter()
            out = model(ids, use_cache=True)
            prefill.append(prompt_tokens / (time.perf_counter() - started))
            past = out.past_key_values
            token = ids[:, -1:]
            started = time.perf_counter()
            for _ in range(decode_tokens):
                out = model(token, past_key_values=past, use_cache=True)
                past = out.past_key_values
            decode.append(decode_tokens / (time.perf_counter() - started))
    return statistics.median(prefill), statistics.median(decode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()
    torch_gflops = matmul_gflops()
    np_gflops = numpy_gflops()
    bound = max(torch_gflops, np_gflops)
    rows = [("llama.cpp Q4_1", *bench_llama(args.prompt_tokens, args.decode_tokens,
                                             args.repeats))]
    if not args.skip_transformers:
        rows.append(("transformers fp32", *bench_transformers(
            False, args.prompt_tokens, args.decode_tokens, args.repeats)))
        rows.append(("transformers INT8 dynamic", *bench_transformers(
            True, args.prompt_tokens, args.decode_tokens, args.repeats)))
    table = Table(title=f"Generators on SmolLM2-135M-Instruct ({args.prompt_tokens}-token "
                  f"prompt, {args.decode_tokens} decoded tokens, median of {args.repeats}; "
                  f"fp32 matmul: torch {torch_gflops:.0f} GFLOP/s, numpy {np_gflops:.0f})")
    for column in ("backend", "prefill tok/s", "decode tok/s", "prefill GFLOP/s",
                   "% of matmul bound", "decode GFLOP/s", "decode % bound"):
        table.add_column(column, justify="right")
    flops_per_token = 2 * model_n_params() / 1e9
    for name, prefill, decode in rows:
        table.add_row(name, f"{prefill:.0f}", f"{decode:.1f}",
                      f"{prefill * flops_per_token:.1f}",
                      f"{100 * prefill * flops_per_token / bound:.1f}%",
                      f"{decode * flops_per_token:.1f}",
                      f"{100 * decode * flops_per_token / bound:.1f}%")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()

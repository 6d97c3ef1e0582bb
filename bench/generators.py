"""Bench 9a: the local generator's speed per weight format x CPU build x setting, against
this machine's measured matmul bounds, and what it means end to end.

    python bench/generators.py [--prompt-tokens 700] [--decode-tokens 32] [--repeats 3]
                               [--questions 10] [--skip-e2e] [--transformers] [--only LABEL...]

Every row runs in a fresh subprocess (the CPU variant is chosen once per process). Rows:

- weight format: the shipped Q4_1, and copies re-quantized by llama.cpp to Q8_0, Q4_0, IQ4_NL;
- build: the ``skylakex`` CPU variant (AVX2 + AVX512 without VNNI/BF16: what the former
  setup build compiled) against the best variant for this CPU (``zen4`` here: VNNI + BF16);
- the tuned adapter: merged into the fast copy (the default), applied per token by llama.cpp,
  or left out;
- settings: flash attention, threads (prefill and decode alike), micro-batch size, the OpenMP
  wait policy alone and with a busy process on one core, FAISS threads for one query;
- MoI exploration: M = 5 passes as parallel sequences vs one after another, against one
  answer-module call on the same passages;
- end to end: cold seconds per question of naive_rag and compose_rag on the demo questions
  with the former settings and the defaults.

Prefill of one token costs about 2 x parameters multiply-adds-as-FLOPs; the table divides the
achieved rate by the measured fp32 GEMM rate (torch) and by the int8 GEMM rate
(``torch._int_mm``), which bounds llama.cpp's quantized dot products.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TEXT = ("The Velmora Bridge is an iron road bridge over the Aubeth River in the town of "
        "Velmora. It was designed by the engineer Ilse Ranneth and completed in 1872. ")
FORMER = {"format": "none", "variant": "skylakex", "flash_attn": False, "threads_batch": "all",
          "encoder": "torch", "adapter": "runtime"}
ADAPTER_SETTINGS = {"merged": {"merge_adapter": True}, "runtime": {"merge_adapter": False},
                    "none": {"adapter": "none"}}
"""The tuned adapter folded into the fast copy (the default), applied by llama.cpp per token
(the only way on the shipped Q4_1 file), or left out (the untuned model the issue measured)."""


def gemm_bounds(threads: int, size: int = 1024, repeats: int = 10) -> dict[str, float]:
    """Best-of-N fp32 and int8 GEMM throughput (G ops/s) with ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    qa = torch.randint(-128, 127, (size, size), dtype=torch.int8)
    qb = torch.randint(-128, 127, (size, size), dtype=torch.int8)
    out = {}
    for name, fn in (("fp32", lambda: a @ b), ("int8", lambda: torch._int_mm(qa, qb))):
        fn()
        best = min(_timed(fn) for _ in range(repeats))
        out[name] = 2 * size**3 / best / 1e9
    return out


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- worker side: one configuration per process -------------------------------------------

def worker_speed(args) -> dict:
    import llama_cpp

    from compose.config import GeneratorConfig
    from compose.generators.cpu_backend import ensure_cpu_backend
    from compose.generators.factory import get_generator

    config = GeneratorConfig(n_ctx=2048, fast_format=args.format, flash_attn=args.flash_attn,
                             n_threads=args.threads, n_batch=args.ubatch, n_ubatch=args.ubatch,
                             **ADAPTER_SETTINGS[args.adapter])
    generator = get_generator(config)
    llama = generator.llama
    if args.threads_batch == "all":  # llama.cpp's own default before: every core for prefill
        llama._ctx.set_n_threads(generator.n_threads, os.cpu_count())
    tokens = llama.tokenize((TEXT * 60).encode())[: args.prompt_tokens]
    prefill, decode = [], []
    for _ in range(args.repeats):
        llama.reset()
        llama._ctx.kv_cache_clear()
        prefill.append(len(tokens) / _timed(lambda: llama.eval(tokens)))
        started = time.perf_counter()
        for _ in range(args.decode_tokens):
            llama.eval([tokens[-1]])
        decode.append(args.decode_tokens / (time.perf_counter() - started))
    return {"prefill": statistics.median(prefill), "decode": statistics.median(decode),
            "variant": ensure_cpu_backend().variant, "model": generator.model_id,
            "params": int(llama_cpp.llama_model_n_params(llama.model))}


def worker_constrained(args) -> dict:
    """Decode tok/s as modules see it: greedy, under a JSON schema, through the generator
    (``--threads-batch all`` marks the former path: llama-cpp-python's own sampler)."""
    from compose.config import GeneratorConfig
    from compose.generators.base import Message
    from compose.generators.factory import get_generator

    generator = get_generator(GeneratorConfig(fast_format=args.format, flash_attn=args.flash_attn,
                                              **ADAPTER_SETTINGS[args.adapter]))
    messages = [Message(role="user", content="Tell a long story about the Velmora Bridge. "
                        "Reply as JSON with the story in the answer field.")]
    schema = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"]}
    rates = []
    for _ in range(args.repeats):
        generator.llama.reset()
        started = time.perf_counter()
        if args.threads_batch == "all":
            reply = generator.llama.create_chat_completion(
                messages=[m.model_dump() for m in messages], max_tokens=args.decode_tokens * 2,
                temperature=0.0, response_format={"type": "json_object", "schema": schema})
            tokens = reply["usage"]["completion_tokens"]
        else:
            tokens = generator.generate(messages, json_schema=schema,
                                        max_tokens=args.decode_tokens * 2).tokens_out
        rates.append(tokens / (time.perf_counter() - started))
    return {"rate": statistics.median(rates)}


def worker_moi(args) -> dict:
    """Wall time of MoI's M = k exploration (parallel and sequential) and of one answer call."""
    from compose.config import GeneratorConfig
    from compose.corpora.demo import demo_index, load_demo
    from compose.generators.factory import get_generator
    from compose.modules.answer import Answer
    from compose.modules.moi.proposals import propose
    from compose.modules.moi.rerank import MoiRerank
    from compose.retrieval.index import LoadedIndex
    from compose.retrieval.retriever import Retriever

    generator = get_generator(GeneratorConfig(fast_format=args.format, flash_attn=args.flash_attn,
                                              **ADAPTER_SETTINGS[args.adapter]))
    retriever = Retriever(LoadedIndex(demo_index()))
    questions = load_demo().questions[: args.questions]
    moi, answer = MoiRerank(), Answer()
    times: dict[str, list[float]] = {"answer": [], "parallel": [], "sequential": []}
    same = 0
    for item in questions:
        passages = retriever.search(item.question, k=5)
        prompt = answer.prompt.render(**answer.prompt_fields(
            answer.Input(question=item.question, passages=passages)))
        generator.llama.reset()
        started = time.perf_counter()
        generator.generate(prompt, json_schema=answer.LLMOutput.model_json_schema(),
                           max_tokens=answer.max_tokens)
        times["answer"].append(time.perf_counter() - started)
        orders = propose("cyclic", len(passages), None, None)
        prompts = [moi.render(item.question, passages, order) for order in orders]
        replies = {}
        for mode in ("parallel", "sequential"):
            started = time.perf_counter()
            replies[mode] = generator.short_answers(prompts, parallel=mode == "parallel")
            times[mode].append(time.perf_counter() - started)
        same += [r.answer for r in replies["parallel"]] == [r.answer
                                                           for r in replies["sequential"]]
    return {mode: statistics.mean(values) for mode, values in times.items()} | {
        "questions": len(questions), "identical": same}


def worker_e2e(args) -> dict:
    from compose.api import load_graph
    from compose.corpora.demo import demo_index, load_demo

    overrides = [f"generator.fast_format={args.format}",
                 f"generator.flash_attn={str(args.flash_attn).lower()}"] + [
                 f"generator.{key}={str(value).lower()}"
                 for key, value in ADAPTER_SETTINGS[args.adapter].items()]
    if args.threads_batch == "all":
        _use_former_sampler()
    questions = load_demo().questions[: args.questions]
    out = {}
    for name in ("naive_rag", "compose_rag"):
        graph = load_graph(name, index=demo_index(), overrides=overrides, cache=False)
        if args.threads_batch == "all":
            _all_cores_for_prefill(graph)
        started = time.perf_counter()
        for item in questions:
            graph.invoke({"question": item.question})
        out[name] = (time.perf_counter() - started) / len(questions)
    return out


def _use_former_sampler() -> None:
    """Greedy calls through llama-cpp-python's sampler (the grammar applied to the whole
    vocabulary at every step), as before composerag decoded them itself."""
    from compose.generators.llama_cpp import LlamaCppGenerator

    def generate(self, messages, *, json_schema=None, max_tokens=256, temperature=0.0,
                 logprobs=False, stop=None):
        return self._sampled(messages, json_schema, max_tokens, temperature, logprobs, stop,
                             time.perf_counter())

    LlamaCppGenerator.generate = generate


def _all_cores_for_prefill(graph) -> None:
    generator = graph.runtime.generator
    generator.llama._ctx.set_n_threads(generator.n_threads, os.cpu_count())


def worker_faiss(args) -> dict:
    import faiss
    import numpy as np

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((10_000, 384)).astype(np.float32)
    faiss.normalize_L2(vectors)
    index = faiss.IndexFlatIP(384)
    index.add(vectors)
    out = {}
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        times = [_timed(lambda i=i: index.search(vectors[i:i + 1], 5)) for i in range(200)]
        out[threads] = 1000 * statistics.median(times)
    return out


STARTUP_PROBE = """
import sys, time
from compose.generators import llama_cpp as backend
original = backend.LlamaCppGenerator.generate
def first_call(self, *args, **kwargs):
    print(f"FIRST_GENERATE {time.time():.6f}", file=sys.stderr, flush=True)
    backend.LlamaCppGenerator.generate = original
    return original(self, *args, **kwargs)
backend.LlamaCppGenerator.generate = first_call
from compose.cli.main import app
app(["run", "naive_rag", "-q", "Who invented the kelp-oil lamp?"])
"""


def startup_seconds(encoder: str, repeats: int = 5) -> float:
    """Median wall seconds from spawning ``composerag run naive_rag`` to its first generator
    call (interpreter start, imports, graph load, index open, retrieval, model load)."""
    times = []
    for _ in range(repeats):
        env = {**os.environ, "COMPOSERAG_ENCODER_RUNTIME": encoder}
        started = time.time()
        done = subprocess.run([sys.executable, "-c", STARTUP_PROBE], env=env,
                              capture_output=True, text=True, check=True)
        stamp = next(line for line in done.stderr.splitlines()
                     if line.startswith("FIRST_GENERATE"))
        times.append(float(stamp.split()[1]) - started)
    return statistics.median(times)


WORKERS = {"speed": worker_speed, "constrained": worker_constrained, "moi": worker_moi,
           "e2e": worker_e2e, "faiss": worker_faiss}


def transformers_speed(int8: bool, prompt_tokens: int, decode_tokens: int,
                       repeats: int) -> tuple[float, float]:
    """The transformers backend on the same weights (dequantized from the GGUF)."""
    import torch

    from compose.config import GeneratorConfig
    from compose.generators.factory import get_generator

    generator = get_generator(GeneratorConfig(backend="transformers", int8=int8))
    model, tokenizer = generator.model, generator.tokenizer
    ids = tokenizer(TEXT * 60, return_tensors="pt").input_ids[:, :prompt_tokens]
    prefill, decode = [], []
    with torch.inference_mode():
        for _ in range(repeats):
            started = time.perf_counter()
            out = model(ids, use_cache=True)
            prefill.append(ids.shape[1] / (time.perf_counter() - started))
            past, token = out.past_key_values, ids[:, -1:]
            started = time.perf_counter()
            for _ in range(decode_tokens):
                past = model(token, past_key_values=past, use_cache=True).past_key_values
            decode.append(decode_tokens / (time.perf_counter() - started))
    return statistics.median(prefill), statistics.median(decode)


# -- driver side ----------------------------------------------------------------------------

def run_worker(kind: str, row: dict, args, busy: bool = False) -> dict:
    env = {**os.environ}
    if row.get("variant") not in (None, "auto"):
        env["COMPOSERAG_LLAMA_CPU"] = row["variant"]
    if row.get("omp"):
        env["OMP_WAIT_POLICY"] = row["omp"]
    if row.get("encoder"):
        env["COMPOSERAG_ENCODER_RUNTIME"] = row["encoder"]
    command = [sys.executable, __file__, "--worker", kind,
               "--format", row.get("format", "q8_0"),
               "--flash-attn", str(int(row.get("flash_attn", True))),
               "--threads", str(row.get("threads", 2)),
               "--threads-batch", str(row.get("threads_batch", "same")),
               "--ubatch", str(row.get("ubatch", 512)),
               "--adapter", row.get("adapter", "merged"),
               "--prompt-tokens", str(args.prompt_tokens),
               "--decode-tokens", str(args.decode_tokens),
               "--repeats", str(args.repeats), "--questions", str(args.questions)]
    spinner = None
    if busy:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    finally:
        if spinner is not None:
            spinner.kill()
    if done.returncode != 0:
        raise RuntimeError(f"worker {kind} {row} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


DEFAULT = {"format": "auto", "flash_attn": True}
SPEED_ROWS = [
    ("former: Q4_1, skylakex build, no FA", FORMER),
    ("former, untuned (no adapter)", {**FORMER, "adapter": "none"}),
    ("Q4_1, zen4 build, no FA", {"format": "none", "flash_attn": False}),
    ("Q8_0, skylakex build, no FA", {"format": "q8_0", "variant": "skylakex",
                                     "flash_attn": False}),
    ("Q8_0, zen4 build, no FA", {"format": "q8_0", "flash_attn": False}),
    ("Q8_0, zen4 build, FA", {"format": "q8_0"}),
    ("BF16, zen4 build, FA", {"format": "bf16"}),
    ("BF16, skylakex build, FA", {"format": "bf16", "variant": "skylakex"}),
    ("F16, zen4 build, FA", {"format": "f16"}),
    ("Q4_0, skylakex build, no FA", {"format": "q4_0", "variant": "skylakex",
                                     "flash_attn": False}),
    ("Q4_0, zen4 build, no FA", {"format": "q4_0", "flash_attn": False}),
    ("Q4_0, zen4 build, FA", {"format": "q4_0"}),
    ("IQ4_NL, zen4 build, no FA", {"format": "iq4_nl", "flash_attn": False}),
    ("IQ4_NL, zen4 build, FA", {"format": "iq4_nl"}),
    ("IQ4_NL, skylakex build, FA", {"format": "iq4_nl", "variant": "skylakex"}),
    ("Q4_0, skylakex build, FA", {"format": "q4_0", "variant": "skylakex"}),
    ("default", DEFAULT),
    ("default, adapter at run time", {**DEFAULT, "adapter": "runtime"}),
    ("default, untuned (no adapter)", {**DEFAULT, "adapter": "none"}),
    ("default, 1 thread", {**DEFAULT, "threads": 1}),
    ("default, ubatch 128", {**DEFAULT, "ubatch": 128}),
    ("default, ubatch 256", {**DEFAULT, "ubatch": 256}),
    ("default, OMP_WAIT_POLICY=PASSIVE", {**DEFAULT, "omp": "PASSIVE"}),
    ("default, busy process on a core", {**DEFAULT, "busy": True}),
    ("default, busy process, PASSIVE", {**DEFAULT, "omp": "PASSIVE", "busy": True}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt-tokens", type=int, default=700)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--transformers", action="store_true",
                        help="also time the transformers backend (fp32 and INT8 dynamic)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="speed-row label prefixes to run (default: all)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--format", default="q8_0", help=argparse.SUPPRESS)
    parser.add_argument("--flash-attn", type=lambda v: v == "1", default=True,
                        help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--threads-batch", default="same", help=argparse.SUPPRESS)
    parser.add_argument("--ubatch", type=int, default=512, help=argparse.SUPPRESS)
    parser.add_argument("--adapter", choices=sorted(ADAPTER_SETTINGS), default="merged",
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    drive(args)


def drive(args) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    bounds = {threads: gemm_bounds(threads) for threads in (1, 2)}
    console.print(f"GEMM bounds (1024^3, best of 10): 1 thread fp32 {bounds[1]['fp32']:.0f} "
                  f"GFLOP/s, int8 {bounds[1]['int8']:.0f} GOP/s; 2 threads fp32 "
                  f"{bounds[2]['fp32']:.0f}, int8 {bounds[2]['int8']:.0f}")
    table = Table(title=f"llama.cpp on SmolLM2-135M-Instruct: {args.prompt_tokens}-token prompt, "
                  f"{args.decode_tokens} decoded tokens, median of {args.repeats}")
    for column in ("weights / build / setting", "variant", "model", "prefill tok/s", "x former",
                   "decode tok/s", "prefill GFLOP/s", "% fp32 bound", "% int8 bound"):
        table.add_column(column, justify="right" if column != "weights / build / setting"
                         else "left")
    baseline = None
    for label, row in SPEED_ROWS:
        if args.only and not any(label.startswith(p) for p in args.only):
            continue
        result = run_worker("speed", row, args, busy=row.get("busy", False))
        baseline = baseline or result["prefill"]
        gflops = result["prefill"] * 2 * result["params"] / 1e9
        bound = bounds[row.get("threads", 2)]
        table.add_row(label, result["variant"],
                      result["model"].split(".Q4_1")[-1].replace(".gguf", "").strip(".")
                      or "q4_1",
                      f"{result['prefill']:.0f}",
                      f"{result['prefill'] / baseline:.2f}", f"{result['decode']:.1f}",
                      f"{gflops:.1f}", f"{100 * gflops / bound['fp32']:.0f}%",
                      f"{100 * gflops / bound['int8']:.0f}%")
        console.print(f"  measured: {label}", style="dim")
    if args.transformers:
        params = result["params"]
        for int8 in (False, True):
            prefill, decode = transformers_speed(int8, args.prompt_tokens, args.decode_tokens,
                                                 args.repeats)
            gflops = prefill * 2 * params / 1e9
            table.add_row(f"transformers {'INT8 dynamic' if int8 else 'fp32'}", "torch",
                          "fp32", f"{prefill:.0f}", f"{prefill / baseline:.2f}", f"{decode:.1f}",
                          f"{gflops:.1f}", f"{100 * gflops / bounds[2]['fp32']:.0f}%",
                          f"{100 * gflops / bounds[2]['int8']:.0f}%")
    console.print(table)
    former_rate = run_worker("constrained", FORMER, args)["rate"]
    default_rate = run_worker("constrained", DEFAULT, args)["rate"]
    console.print(
        f"Greedy decode under a JSON schema, prompt + {2 * args.decode_tokens} tokens at most, "
        f"as modules call it: former (llama-cpp-python's sampler, Q4_1) {former_rate:.1f} "
        f"tok/s, default {default_rate:.1f} tok/s ({default_rate / former_rate:.2f}x)")
    faiss_ms = run_worker("faiss", {}, args)
    console.print(f"FAISS flat, 10k x 384, one query: {faiss_ms['1']:.2f} ms with 1 thread, "
                  f"{faiss_ms['2']:.2f} ms with 2 (median of 200)")
    moi = run_worker("moi", DEFAULT, args)
    console.print(
        f"MoI exploration, M = k = 5, demo questions ({moi['questions']}): parallel "
        f"{moi['parallel']:.2f} s = {moi['parallel'] / moi['answer']:.2f}x one answer call "
        f"({moi['answer']:.2f} s); sequential {moi['sequential']:.2f} s = "
        f"{moi['sequential'] / moi['answer']:.2f}x; identical answers on "
        f"{moi['identical']}/{moi['questions']} questions")
    console.print(
        "composerag run naive_rag, fresh process, spawn to first generator call (median of 5): "
        f"{startup_seconds('onnx'):.2f} s with the ONNX encoder, "
        f"{startup_seconds('torch'):.2f} s with torch")
    if args.skip_e2e:
        return
    e2e = Table(title=f"End to end, cold, {args.questions} demo questions: s per question")
    for column in ("settings", "naive_rag", "compose_rag"):
        e2e.add_column(column, justify="right")
    before = run_worker("e2e", FORMER, args)
    after = run_worker("e2e", DEFAULT, args)
    e2e.add_row("former (Q4_1, skylakex, no FA, torch encoder)", f"{before['naive_rag']:.2f}",
                f"{before['compose_rag']:.2f}")
    e2e.add_row("defaults", f"{after['naive_rag']:.2f}", f"{after['compose_rag']:.2f}")
    e2e.add_row("after / before", f"{after['naive_rag'] / before['naive_rag']:.0%}",
                f"{after['compose_rag'] / before['compose_rag']:.0%}")
    console.print(e2e)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()

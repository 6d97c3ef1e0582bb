"""``tune train``: LoRA on the HF form of the embedded model, on the CPU, resumable.

The loss is the cross-entropy of the reply tokens only (the prompt is context, not a target),
and logits are computed only at reply positions: the 49k-word output layer over a 900-token
prompt would otherwise cost a fifth of each step. LoRA covers the upper ``lora_layers`` of
the stack, so back-propagation stops there instead of running through every layer; with 2
cores the token budget, not the model's capacity, is what limits a 60-minute recipe.

A checkpoint (adapter weights, optimizer, schedule, position in the data, RNG states and the
loss curve) is written atomically every ``checkpoint_every`` steps and when the time budget
runs out, so a killed run resumes where it stopped; a checkpoint made with other settings or
other data is refused rather than silently mixed.

Usage::

    result = train(TrainConfig(data=Path("runs/tune/data"), out=Path("runs/tune/run1")))
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from pydantic import BaseModel, Field

from compose.tune.dataset import file_digest, read_examples
from compose.tune.example import TrainingExample
from compose.tune.flops import Efficiency, training_efficiency

if TYPE_CHECKING:  # torch and peft take seconds to import: only the commands that train do
    import torch
    from peft import PeftModel

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainConfig(BaseModel):
    data: Path = Field(description="A `tune build-data` output directory.")
    out: Path
    base_model: str = "smollm2-135m"
    rank: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(TARGET_MODULES))
    lora_layers: int | None = Field(default=16, ge=1, description=(
        "Adapt only the top N transformer layers (all when unset): back-propagation then "
        "stops at layer N from the top, 1.7x the tokens/s of all 30 layers here."))
    precision: Literal["fp32", "bf16"] = Field(default="fp32", description=(
        "bf16 runs the matmuls under CPU autocast (AVX512-BF16 where the CPU has it); the "
        "LoRA weights and the optimizer stay fp32."))
    learning_rate: float = Field(default=1e-3, gt=0)
    warmup_steps: int = Field(default=10, ge=0)
    epochs: float = Field(default=1.0, gt=0)
    examples_per_step: int = Field(default=8, ge=1)
    max_tokens: int = Field(default=1280, ge=16, description="Longer examples are skipped.")
    consistency_weight: float = Field(default=0.1, ge=0, description=(
        "Weight of the symmetric KL between the reply distributions of a reading example "
        "and its passage-permuted copy (CORD); 0 trains both copies independently."))
    limit: int | None = Field(default=None, ge=1, description="Use only the first N examples.")
    seed: int = 0
    time_budget_min: float | None = Field(default=None, gt=0)
    checkpoint_every: int = Field(default=25, ge=1)
    threads: int | None = Field(default=None, ge=1)

    def fingerprint(self, data_digest: str) -> str:
        """What a checkpoint must share to be resumed: everything but run-time knobs."""
        settings = self.model_dump(mode="json", exclude={
            "out", "time_budget_min", "checkpoint_every", "threads"})
        settings["data"] = data_digest
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class TrainResult(BaseModel):
    adapter_dir: str
    steps: int
    total_steps: int
    finished: bool = Field(description="False when the time budget stopped it early.")
    train_tokens: int
    target_tokens: int
    elapsed_s: float
    tokens_per_s: float
    first_loss: float | None
    last_loss: float | None
    skipped_too_long: int
    losses: list[float]
    efficiency: Efficiency | None = None


class CheckpointMismatch(RuntimeError):
    pass


def step_units(examples: list[TrainingExample], seed: int, epochs: float,
               pair_permutations: bool) -> list[list[int]]:
    """Example indices in training order; a reading example and its permuted copy stay
    together when the consistency term needs them in one step."""
    units: list[list[int]] = []
    if pair_permutations:
        by_group: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, example in enumerate(examples):
            by_group[(example.module, example.group)].append(i)
        for members in by_group.values():
            originals = [i for i in members if not examples[i].variant.startswith("perm")]
            copies = [i for i in members if examples[i].variant.startswith("perm")]
            if len(originals) == 1 and copies:
                units.append([originals[0], copies[0]])
                units.extend([i] for i in copies[1:])
            else:
                units.extend([i] for i in members)
    else:
        units = [[i] for i in range(len(examples))]
    rng = random.Random(seed)
    ordered: list[list[int]] = []
    whole, part = int(epochs), epochs - int(epochs)
    for _ in range(whole):
        epoch = list(units)
        rng.shuffle(epoch)
        ordered += epoch
    if part:
        epoch = list(units)
        rng.shuffle(epoch)
        ordered += epoch[: int(len(epoch) * part)]
    return ordered


def build_model(config: TrainConfig) -> tuple[PeftModel, Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from compose.generators.models import resolve_gguf
    from compose.generators.transformers_backend import dequantized_checkpoint

    base_dir = dequantized_checkpoint(resolve_gguf(config.base_model))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model.config.use_cache = False
    n_layers = model.config.num_hidden_layers
    layers = None
    if config.lora_layers and config.lora_layers < n_layers:
        layers = list(range(n_layers - config.lora_layers, n_layers))
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=config.target_modules, layers_to_transform=layers,
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lora), base_dir


def reply_logits(model: PeftModel, prompt: list[int], target: list[int],
                 precision: str = "fp32") -> torch.Tensor:
    """Logits predicting each target token (positions len(prompt)-1 ... end-1)."""
    import torch

    ids = torch.tensor([prompt + target])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = model(input_ids=ids, logits_to_keep=len(target) + 1)
    logits: torch.Tensor = out.logits[0, :-1].float()
    return logits


def shared_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def save_checkpoint(directory: Path, model: PeftModel, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler,
                    state: dict[str, Any]) -> None:
    import torch
    from peft import get_peft_model_state_dict

    staging = directory.with_name(directory.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    torch.save({"adapter": get_peft_model_state_dict(model), "optimizer":
                optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), **state}, staging / "state.pt")
    backup = directory.with_name(directory.name + ".old")
    if directory.exists():
        os.replace(directory, backup)
    os.replace(staging, directory)
    if backup.exists():
        shutil.rmtree(backup)


def load_checkpoint(directory: Path, fingerprint: str) -> dict[str, Any] | None:
    import torch

    if not (directory / "state.pt").is_file():
        old = directory.with_name(directory.name + ".old")  # killed during the swap
        if not (old / "state.pt").is_file():
            return None
        directory = old
    state: dict[str, Any] = torch.load(directory / "state.pt", weights_only=False)
    if state.get("fingerprint") != fingerprint:
        raise CheckpointMismatch(
            f"{directory} was made with other settings or data; resume with the same "
            "ones, or pass --restart to discard it")
    return state


class TrainingProgress(Protocol):
    """What ``train`` reports its progress to (the CLI draws it as a bar)."""

    def start(self, total: int, completed: int) -> None: ...

    def advance(self, loss: float, tokens_per_s: float) -> None: ...


def train(config: TrainConfig, *, restart: bool = False,
          progress: TrainingProgress | None = None) -> TrainResult:
    """Train (or resume) and save the peft adapter to ``config.out / 'adapter'``."""
    import torch

    from compose.generators.llama_cpp import usable_threads
    from compose.generators.models import resolve_gguf
    from compose.tune.tokens import ExampleTokenizer

    train_file = config.data / "train.jsonl"
    if not train_file.is_file():
        raise FileNotFoundError(f"{train_file} not found: run `composerag tune build-data`")
    torch.set_num_threads(config.threads or usable_threads())
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    examples = read_examples(train_file)[: config.limit]
    tokenizer = ExampleTokenizer(resolve_gguf(config.base_model))
    encoded = [tokenizer(e) for e in examples]
    too_long = {i for i, (p, t) in enumerate(encoded) if len(p) + len(t) > config.max_tokens}
    units = [u for u in step_units(examples, config.seed, config.epochs,
                                   config.consistency_weight > 0)
             if not any(i in too_long for i in u)]
    steps: list[list[list[int]]] = []
    for unit in units:
        if not steps or sum(len(u) for u in steps[-1]) >= config.examples_per_step:
            steps.append([])
        steps[-1].append(unit)

    model, _ = build_model(config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    total = len(steps)

    def schedule(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        progress_share = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_share)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    fingerprint = config.fingerprint(file_digest(train_file))
    checkpoint_dir = config.out / "checkpoint"
    if restart and checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    state = load_checkpoint(checkpoint_dir, fingerprint)
    done, losses, tokens, target_tokens, elapsed = 0, [], 0, 0, 0.0
    if state is not None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        done, losses = state["step"], state["losses"]
        tokens, target_tokens, elapsed = state["tokens"], state["target_tokens"], state["elapsed"]
    model.train()
    started = time.perf_counter() - elapsed
    budget_s = config.time_budget_min * 60 if config.time_budget_min else None

    def checkpoint() -> None:
        save_checkpoint(checkpoint_dir, model, optimizer, scheduler, {
            "fingerprint": fingerprint, "step": done, "losses": losses, "tokens": tokens,
            "target_tokens": target_tokens, "elapsed": time.perf_counter() - started})

    if progress is not None:
        progress.start(total=total, completed=done)
    stopped_early = False
    for step in steps[done:]:
        if budget_s is not None and time.perf_counter() - started >= budget_s:
            stopped_early = True
            break
        n_target = sum(len(encoded[i][1]) for unit in step for i in unit)
        step_loss = 0.0
        for unit in step:
            logits = [reply_logits(model, *encoded[i], config.precision) for i in unit]
            loss = cast("torch.Tensor", sum(torch.nn.functional.cross_entropy(  # of tensors
                lg, torch.tensor(encoded[i][1]), reduction="sum")
                for lg, i in zip(logits, unit, strict=True)) / n_target)
            if len(unit) == 2 and config.consistency_weight > 0:
                shared = shared_prefix(encoded[unit[0]][1], encoded[unit[1]][1])
                if shared:
                    a = torch.log_softmax(logits[0][:shared], -1)
                    b = torch.log_softmax(logits[1][:shared], -1)
                    kl = 0.5 * (torch.nn.functional.kl_div(a, b, log_target=True,
                                                           reduction="batchmean")
                                + torch.nn.functional.kl_div(b, a, log_target=True,
                                                             reduction="batchmean"))
                    loss = loss + config.consistency_weight * kl * len(unit) / len(step)
            loss.backward()  # type: ignore[no-untyped-call]  # unannotated in torch
            step_loss += float(loss.detach())
            tokens += sum(len(encoded[i][0]) + len(encoded[i][1]) for i in unit)
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        target_tokens += n_target
        losses.append(round(step_loss, 4))
        done += 1
        if progress is not None:
            progress.advance(loss=step_loss, tokens_per_s=tokens / max(
                1e-9, time.perf_counter() - started))
        if done % config.checkpoint_every == 0:
            checkpoint()
    checkpoint()
    adapter_dir = config.out / "adapter"
    model.save_pretrained(str(adapter_dir))
    elapsed = time.perf_counter() - started
    trained_examples = sum(len(unit) for step in steps[:done] for unit in step)
    efficiency = training_efficiency(
        model.config, lora_layers=config.lora_layers, tokens=tokens,
        mean_context=tokens / max(1, trained_examples), seconds=elapsed,
        threads=config.threads or usable_threads()) if done else None
    result = TrainResult(
        adapter_dir=str(adapter_dir), steps=done, total_steps=total,
        finished=not stopped_early and done == total, train_tokens=tokens,
        target_tokens=target_tokens, elapsed_s=round(elapsed, 1),
        tokens_per_s=round(tokens / max(elapsed, 1e-9), 1),
        first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None,
        skipped_too_long=len(too_long), losses=losses, efficiency=efficiency)
    (config.out / "train_result.json").write_text(result.model_dump_json(indent=2) + "\n")
    (config.out / "train_config.json").write_text(config.model_dump_json(indent=2) + "\n")
    return result

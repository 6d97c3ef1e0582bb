"""``tune build-data``: training and tuning-validation examples from the training files.

A recipe caps how many cases of each (source, module) enter training, because the CPU budget
is in tokens: the default fills about 60 minutes of LoRA training on 2 cores. A tenth of each
file's rows (by a hash of the row, so a row never straddles the split, and the split does not
move when caps change) is kept aside as the tuning-validation set that ``tune eval`` scores.

Reading cases also appear with their passages in other orders (the CORD recipe: the same
question and gold answer under a position perturbation), so the reader cannot learn where the
gold passage sits; the permuted copies share a group with the original, which ``tune train``
uses for the optional consistency term.

Usage::

    summary = build_dataset(Path("../shared/data/train"), Path("runs/tune/data"))
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, PositiveInt, ValidationError

from compose.tune.example import ModuleCase, TrainingExample, build_module, render_example
from compose.tune.sources import SOURCES, row_rng

if TYPE_CHECKING:
    from compose.module import LLMModule

VALID_SHARE = 0.10


class Recipe(BaseModel):
    """How many training cases of each source and module; 0 leaves them out."""

    caps: dict[str, dict[str, int]] = Field(default_factory=lambda: {
        "twowiki": {"answer": 560, "verify": 150, "decompose": 200,
                    "retrieval_decision": 80},
        "hotpotqa_evidence": {"answer": 350},
        "squad": {"answer": 180, "verify": 80, "decompose": 40},
        "squad_unanswerable": {"answer": 50},
        "musique": {"decompose": 80, "answer": 30},
        "strategyqa": {"decompose": 120},
    })
    permuted_share: float = Field(default=0.1, ge=0, le=1, description=(
        "Share of multi-passage reading cases that also appear with passages re-ordered."))
    bootstrap_files: list[str] = Field(default_factory=list, description=(
        "Case files written by `tune bootstrap`; capped per module under caps['bootstrap']."))
    multi_hop_reads: list[PositiveInt] = Field(
        default_factory=lambda: [5], min_length=1, description=(
        "Passage counts drawn from for multi-hop reading cases (2Wiki, MuSiQue, HotpotQA "
        "evidence); [5, 8] also trains the 8-passage read of compose_rag's synthesis. "
        "Measured on the design rows, [5, 8] lifted naive_rag but not compose_rag over it."))
    valid_cap: int = Field(default=150, ge=0, description="Validation cases per module "
                           "and source, so tune eval stays minutes, not hours.")


class DatasetSummary(BaseModel):
    out_dir: str
    counts: dict[str, int]
    skipped: dict[str, int]
    sources: dict[str, str]


def is_validation(group: str) -> bool:
    digest = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < VALID_SHARE


def permuted(case: ModuleCase, copy: int) -> ModuleCase | None:
    passages = list(case.input.get("passages", []))
    if case.module != "answer" or len(passages) < 2:
        return None
    rng = row_rng(f"{case.source}:{case.variant}:perm{copy}")
    for _ in range(5):
        rng.shuffle(passages)
        if passages != case.input["passages"]:
            break
    return case.model_copy(update={"input": {**case.input, "passages": passages},
                                   "variant": f"perm{copy}"})


def select(cases: list[ModuleCase], cap: int, seed: str) -> list[ModuleCase]:
    if len(cases) <= cap:
        return cases
    return [cases[i] for i in sorted(row_rng(seed).sample(range(len(cases)), cap))]


def cap_of(caps: dict[str, int] | None, module: str) -> int:
    """A module's cap; ``None`` (bootstrap files without caps['bootstrap']) takes all."""
    return sys.maxsize if caps is None else caps.get(module, 0)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def build_dataset(data_dir: Path, out_dir: Path, recipe: Recipe | None = None) -> DatasetSummary:
    recipe = recipe or Recipe()
    splits: dict[str, list[TrainingExample]] = {"train": [], "valid": []}
    counts: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    sources: dict[str, str] = {}
    modules: dict[tuple[str, str], LLMModule] = {}
    inputs: list[tuple[str, dict[str, int] | None, Path, Callable[[Path], Iterator[ModuleCase]]]]
    inputs = [(name, caps, data_dir / SOURCES[name].file,
               partial(SOURCES[name].cases, reads=recipe.multi_hop_reads)
               if SOURCES[name].multi_hop else SOURCES[name].cases)
              for name, caps in recipe.caps.items() if name in SOURCES]
    # Without caps['bootstrap'] every bootstrapped module is taken whole: the cases are
    # already filtered by score, and a missing cap must not silently drop them all.
    inputs += [(f"bootstrap:{Path(file).name}", recipe.caps.get("bootstrap"),
                Path(file), read_cases) for file in recipe.bootstrap_files]
    unknown = set(recipe.caps) - set(SOURCES) - {"bootstrap"}
    if unknown:
        raise ValueError(f"recipe names unknown sources {sorted(unknown)}; known: "
                         f"{sorted(SOURCES)} and 'bootstrap'")
    for name, caps, path, reader in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"training file {path} is missing (source {name!r})")
        sources[path.name] = file_digest(path)
        by_split: dict[tuple[str, str], list[ModuleCase]] = {}
        for case in reader(path):
            if cap_of(caps, case.module) <= 0:
                continue
            split = "valid" if is_validation(case.group) else "train"
            by_split.setdefault((split, case.module), []).append(case)
        for (split, module), cases in sorted(by_split.items()):
            cap = cap_of(caps, module) if split == "train" else recipe.valid_cap
            chosen = select(cases, cap, f"{name}:{module}:{split}")
            if split == "train":
                rng = row_rng(f"{name}:{module}:permute")
                chosen += [p for c in chosen if rng.random() < recipe.permuted_share
                           for p in [permuted(c, 1)] if p is not None]
            for case in chosen:
                key = (case.module, json.dumps(case.params, sort_keys=True))
                if key not in modules:
                    modules[key] = build_module(case.module, case.params)
                try:
                    example = render_example(case, modules[key])
                except (ValidationError, KeyError, ValueError) as exc:
                    skipped[f"{name}/{module}: {type(exc).__name__}"] += 1
                    continue
                splits[split].append(example)
                counts[f"{split}/{module}/{name}"] += 1
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, examples in splits.items():
        row_rng(f"order:{split}").shuffle(examples)
        staging = out_dir / f".{split}.jsonl.partial"
        with staging.open("w", encoding="utf-8") as handle:
            for example in examples:
                handle.write(example.model_dump_json() + "\n")
        os.replace(staging, out_dir / f"{split}.jsonl")
    summary = DatasetSummary(out_dir=str(out_dir), counts=dict(sorted(counts.items())),
                             skipped=dict(skipped), sources=sources)
    (out_dir / "manifest.json").write_text(json.dumps(
        {"recipe": recipe.model_dump(), **summary.model_dump()}, indent=2) + "\n")
    return summary


def read_cases(path: Path) -> Iterator[ModuleCase]:
    for number, line in enumerate(path.open(encoding="utf-8"), start=1):
        if line.strip():
            try:
                yield ModuleCase.model_validate_json(line)
            except ValidationError as exc:
                raise ValueError(f"{path}:{number}: not a module case: "
                                 f"{exc.errors()[0]['msg']}") from exc


def read_examples(path: Path) -> list[TrainingExample]:
    """The examples of a split file; a damaged line is reported with its number."""
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                examples.append(TrainingExample.model_validate_json(line))
            except ValidationError as exc:
                raise ValueError(f"{path}:{number}: not a training example: "
                                 f"{exc.errors()[0]['msg']}") from exc
    return examples

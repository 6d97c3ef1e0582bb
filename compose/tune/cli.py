"""``composerag tune``: build training data from the modules, train a LoRA, score modules.

Usage::

    composerag tune build-data --train-dir ../shared/data/train --out runs/tune/data
    composerag tune train --data runs/tune/data --out runs/tune/default --time-budget-min 60
    composerag tune eval --data runs/tune/data --adapter runs/tune/default/adapter.gguf
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import TaskID

    from compose.tune.evaluate import ModuleScores

tune_app = typer.Typer(help="Tune the local generator per module (LoRA) and score modules.",
                       no_args_is_help=True)
console = Console(stderr=True)
# rich.progress and rich.table are imported by the commands that draw them: this file is
# imported by every `composerag` start-up, which should not pay for them.
DEFAULT_TRAIN_DIR = Path("../shared/data/train")


def setting(item: str) -> tuple[str, object]:
    """``key=value`` with value read as JSON when it is JSON (numbers, lists), else text."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"expected field=value, got {item!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


@tune_app.command("build-data")
def build_data(
    train_dir: Annotated[Path, typer.Option(help="The training files (never the dev splits).")]
    = DEFAULT_TRAIN_DIR,
    out: Annotated[Path, typer.Option(help="Where train.jsonl, valid.jsonl go.")] = Path(
        "runs/tune/data"),
    recipe: Annotated[Path | None, typer.Option(
        help="JSON Recipe (caps per source and module); default: the shipped recipe.")] = None,
) -> None:
    """Render each module's training examples from the training files.

    Example: composerag tune build-data --train-dir ../shared/data/train --out runs/tune/data
    """
    from rich.table import Table

    from compose.tune.dataset import Recipe, build_dataset

    chosen = Recipe.model_validate_json(recipe.read_text()) if recipe else Recipe()
    try:
        summary = build_dataset(train_dir, out, chosen)
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    table = Table("split/module/source", "examples", title=f"training data in {out}")
    for key, count in summary.counts.items():
        table.add_row(key, str(count))
    Console().print(table)
    for reason, count in summary.skipped.items():
        console.print(f"skipped {count}: {reason}")


@tune_app.command("bootstrap")
def bootstrap_command(
    graph: Annotated[str, typer.Argument(help="Shipped graph name or YAML path.")],
    dataset: Annotated[str, typer.Option(help="NAME:PATH of TRAINING questions, e.g. "
                                         "2wikimultihopqa:../shared/data/train/"
                                         "2wikimultihopqa_train_migres.jsonl.")],
    out: Annotated[Path, typer.Option(help="Case file to write (JSONL).")],
    limit: Annotated[int | None, typer.Option(help="Questions to run (the first N).")] = None,
    threshold: Annotated[float, typer.Option(help="Keep runs whose F1 is at least this.")]
    = 0.8,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Graph overrides.")] = None,
) -> None:
    """Keep a graph's module calls from its well-scored runs on training questions.

    The cases feed `build-data` (recipe field bootstrap_files); the runs resume like eval.

    Example: composerag tune bootstrap compose_rag --dataset
    2wikimultihopqa:../shared/data/train/2wikimultihopqa_train_migres.jsonl --limit 200
    --out runs/tune/boot/compose_rag.jsonl
    """
    from compose.eval.runner import run_eval
    from compose.tune.bootstrap import (
        EvaluationDataError,
        harvest,
        refuse_evaluation_split,
        row_groups,
        write_cases,
    )

    try:
        refuse_evaluation_split(dataset)
    except EvaluationDataError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    results = out.with_name(out.stem + ".runs.jsonl")
    run_eval(graph, dataset, out=results, limit=limit, overrides=set_, save_traces=True)
    cases = harvest(results, graph, threshold=threshold, overrides=set_,
                    groups=row_groups(dataset))
    write_cases(cases, out)
    by_module: dict[str, int] = {}
    for case in cases:
        by_module[case.module] = by_module.get(case.module, 0) + 1
    console.print(f"{len(cases)} cases in {out}: " + ", ".join(
        f"{m} {n}" for m, n in sorted(by_module.items())))


class RichTrainingProgress:
    """The trainer's progress callbacks shown as a rich bar with loss and tokens/s."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.3f}"),
                            TextColumn("{task.fields[tps]:.0f} tok/s"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        self.task: TaskID | None = None

    def start(self, total: int, completed: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task("train", total=total, completed=completed, loss=0.0,
                                      tps=0.0)

    def advance(self, loss: float, tokens_per_s: float) -> None:
        assert self.task is not None  # the trainer calls start first
        self.bar.update(self.task, advance=1, loss=loss, tps=tokens_per_s)

    def stop(self) -> None:
        self.bar.stop()


@tune_app.command("train")
def train_command(
    data: Annotated[Path, typer.Option(help="A build-data output directory.")] = Path(
        "runs/tune/data"),
    out: Annotated[Path, typer.Option(help="Run directory (checkpoint, adapter).")] = Path(
        "runs/tune/default"),
    time_budget_min: Annotated[float | None, typer.Option(
        help="Stop (and save) after this many minutes.")] = None,
    restart: Annotated[bool, typer.Option(help="Discard an existing checkpoint.")] = False,
    export: Annotated[bool, typer.Option(help="Also write OUT/adapter.gguf for llama.cpp.")]
    = True,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="TrainConfig field=value (e.g. rank=8, epochs=2, limit=40).")] = None,
) -> None:
    """Train a LoRA adapter on the examples; resumes a killed run from its checkpoint.

    Example: composerag tune train --data runs/tune/data --out runs/tune/default
    """
    from compose.tune.train import CheckpointMismatch, TrainConfig, train

    fields: dict[str, object] = {"data": data, "out": out, "time_budget_min": time_budget_min}
    for item in set_ or []:
        key, value = setting(item)
        fields[key] = value
    config = TrainConfig.model_validate(fields)
    progress = RichTrainingProgress()
    try:
        result = train(config, restart=restart, progress=progress)
    except (CheckpointMismatch, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        progress.stop()
    console.print(f"{result.steps}/{result.total_steps} steps, {result.train_tokens} tokens "
                  f"in {result.elapsed_s:.0f} s ({result.tokens_per_s:.0f} tok/s); loss "
                  f"{result.first_loss} -> {result.last_loss}; adapter in {result.adapter_dir}")
    if result.efficiency:
        e = result.efficiency
        console.print(f"{e.achieved_gflops} GFLOP/s, {e.share_of_bound:.0%} of this "
                      f"machine's fp32 matmul bound ({e.fp32_bound_gflops} GFLOP/s)")
    if export:
        from compose.tune.export import export_adapter

        manifest = config.data / "manifest.json"
        recipe = {"train": config.model_dump(mode="json"), "steps": result.steps,
                  "train_tokens": result.train_tokens, "data": json.loads(
                      manifest.read_text()) if manifest.is_file() else {}}
        target = export_adapter(Path(result.adapter_dir), out / "adapter.gguf",
                                base_model=config.base_model, recipe=recipe)
        console.print(f"llama.cpp adapter: {target}")


@tune_app.command("export")
def export_command(
    adapter_dir: Annotated[Path, typer.Argument(help="A peft adapter directory.")],
    out_file: Annotated[Path, typer.Argument(help="The .gguf adapter to write.")],
    base_model: Annotated[str, typer.Option(help="Base model name or GGUF.")] = "smollm2-135m",
) -> None:
    """Convert a peft adapter with llama.cpp's own converter.

    Example: composerag tune export runs/tune/default/adapter runs/tune/default/adapter.gguf
    """
    from compose.tune.export import export_adapter

    console.print(str(export_adapter(adapter_dir, out_file, base_model=base_model)))


def _score_adapter(name: str, valid: Path, fields: dict[str, object], *,
                   modules: list[str] | None, limit: int | None) -> list[ModuleScores]:
    """One adapter's module scores, drawn as a progress bar while they are computed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from compose.config import GeneratorConfig
    from compose.tune.evaluate import evaluate_modules

    with Progress(TextColumn(f"scoring adapter={name}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("eval", total=None)
        return evaluate_modules(
            valid, GeneratorConfig.model_validate({**fields, "adapter": name}),
            modules=modules, limit=limit, on_example=lambda: bar.advance(task),
            on_start=lambda total: bar.update(task, total=total))


@tune_app.command("eval")
def eval_command(
    data: Annotated[Path, typer.Option(help="A build-data output directory.")] = Path(
        "runs/tune/data"),
    adapter: Annotated[list[str] | None, typer.Option(
        help="none, tuned, or a .gguf adapter path; repeat to compare side by side.")] = None,
    modules: Annotated[str | None, typer.Option(help="Comma-separated module names.")] = None,
    limit: Annotated[int | None, typer.Option(help="Validation examples per module.")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the scores as JSON here.")]
    = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="GeneratorConfig field=value, e.g. fast_format=none.")] = None,
) -> None:
    """Score each module alone on the tuning-validation set, per adapter.

    Example: composerag tune eval --data runs/tune/data --adapter none --adapter tuned
    --limit 60
    """
    from rich.table import Table

    adapters = adapter or ["none"]
    fields: dict[str, object] = {}
    for item in set_ or []:
        key, value = setting(item)
        fields[key] = value
    valid = data / "valid.jsonl"
    results: dict[str, list[ModuleScores]] = {}
    for name in adapters:
        results[name] = _score_adapter(name, valid, fields,
                                       modules=modules.split(",") if modules else None,
                                       limit=limit)
    table = Table("module", "n", "metric", *[f"adapter={a}" for a in adapters],
                  title="module scores on the tuning-validation set")
    first = results[adapters[0]]
    for position, entry in enumerate(first):
        for metric in [*entry.metrics, "parse failures"]:
            cells = []
            for name in adapters:
                other = results[name][position]
                cells.append(str(other.failures) if metric == "parse failures"
                             else f"{other.metrics.get(metric, float('nan')):.3f}")
            table.add_row(entry.module, str(entry.n), metric, *cells)
    Console().print(table)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({name: [s.model_dump() for s in scores]
                                   for name, scores in results.items()}, indent=2) + "\n")

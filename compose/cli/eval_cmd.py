"""``composerag eval``: evaluate a graph on a benchmark (``eval run``, the default) or compare
evaluation runs (``eval compare``).

The flags of ``eval run`` become one :class:`compose.eval.config.EvalConfig`, the settings
the local runner and the Ray workers read. Like the rest of the CLI, this file imports
nothing heavy (not even pydantic) until a command runs, so ``--help`` stays instant.

Usage::

    composerag eval naive_rag --dataset hotpotqa:../shared/data/hotpotqa/dev200.jsonl
    composerag eval compare runs/eval/a.jsonl runs/eval/b.jsonl
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from typer.core import TyperGroup

from compose.cli.common import SetOption, err, fail, out

if TYPE_CHECKING:
    from typer._click.core import Context  # the copy of click that typer runs on


class EvalGroup(TyperGroup):
    """``composerag eval GRAPH --dataset ...`` evaluates a graph, as it did before ``eval``
    had subcommands: arguments that do not start with a subcommand name (or ``--help``) go to
    ``eval run``. A graph file literally named ``compare`` is reached as ``eval run compare``."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(cls=EvalGroup, no_args_is_help=True,
                       help="Evaluate a graph on a benchmark (the default: `eval GRAPH "
                       "--dataset ...` is `eval run`), or compare evaluation runs.")


@eval_app.command("run")
def evaluate(
    graph: Annotated[str, typer.Argument(help="Shipped graph name or YAML path.")],
    dataset: Annotated[str, typer.Option(
        help="NAME:PATH (hotpotqa, 2wikimultihopqa, musique, asqa, pubmedqa) or 'demo'.")],
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Results JSONL.")] = None,
    set_: SetOption = None,
    cache: Annotated[bool, typer.Option(help="Use the module cache.")] = True,
    cache_path: Annotated[str | None, typer.Option(help="SQLite cache file.")] = None,
    index_root: Annotated[Path | None, typer.Option(help="Where pooled indexes live.")] = None,
    recall_k: Annotated[int, typer.Option(help="k of retrieval recall@k.")] = 5,
    restart: Annotated[bool, typer.Option(help="Discard earlier results in --out.")] = False,
    judge: Annotated[bool, typer.Option(
        help="Also ask the verify module whether each final answer is grounded in its "
        "cited passages (one more LLM call per answered question).")] = False,
    save_traces: Annotated[bool, typer.Option(
        help="Write each question's trace to OUT.traces.jsonl (see `composerag trace show`)."
    )] = False,
    backend: Annotated[str, typer.Option(
        help="local (this process) or ray (questions spread over --workers Ray actors).")
    ] = "local",
    workers: Annotated[int, typer.Option(help="Ray workers (each loads its own model).")] = 2,
    ray_address: Annotated[str | None, typer.Option(
        help="Ray cluster to join ('auto': the one `ray start` made); default: a private "
        "local instance.")] = None,
    retry_errors: Annotated[bool, typer.Option(
        help="Run again the questions whose earlier attempt ended in an error.")] = False,
) -> None:
    """Evaluate a graph on a benchmark; resumes where an interrupted run stopped."""
    from pydantic import ValidationError

    from compose.eval.config import EvalConfig
    from compose.eval.report import summarize, summary_table
    from compose.eval.results_file import ResultsLockedError
    from compose.eval.runner import EvalInterrupted, ResumeMismatchError, run_evaluation

    dataset_name = dataset.split(":", 1)[0]
    out_file = out_file or Path("runs") / "eval" / f"{Path(graph).stem}__{dataset_name}.jsonl"
    try:  # validated as input: typer checked the types, a value can still be refused
        config = EvalConfig.model_validate(dict(
            graph=graph, dataset=dataset, out=out_file, limit=limit, overrides=set_,
            cache=cache, cache_path=cache_path, index_root=index_root, recall_k=recall_k,
            restart=restart, judge=judge, save_traces=save_traces, backend=backend,
            workers=workers, ray_address=ray_address, retry_errors=retry_errors))
    except ValidationError as exc:
        fail("; ".join(str(e.get("ctx", {}).get("error", e["msg"])) for e in exc.errors()))
    try:
        records = run_evaluation(config)
    except (FileNotFoundError, ValueError, ResumeMismatchError, ResultsLockedError) as exc:
        fail(str(exc))  # ValueError: a graph or spec refused (GraphValidationError and kin)
    except EvalInterrupted as stop:
        err.print(f"{escape(str(stop))}; run the same command again to resume (the question "
                  "in flight is run again)", soft_wrap=True)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        err.print("interrupted before the first question finished; no new result was written")
        raise typer.Exit(130) from None
    out.print(summary_table(f"{graph} on {dataset_name}", summarize(records)))
    out.print(f"[dim]per-question results: {out_file}[/]")


@eval_app.command("compare")
def eval_compare(
    runs: Annotated[list[str], typer.Argument(
        help="Results files written by `composerag eval`, as PATH or LABEL=PATH; the first "
        "is the baseline.")],
    html: Annotated[Path | None, typer.Option(
        help="Also write a self-contained HTML report: the table, per-node cost bars and "
        "the metric against seconds per question (needs matplotlib).")] = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", help="A metric to compare (repeatable; default: em and f1).")] = None,
    primary: Annotated[str | None, typer.Option(
        help="The metric questions are won, lost or tied on (default: f1 when compared, "
        "else the first --metric).")] = None,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="Print the table as Markdown.")] = False,
) -> None:
    """Compare evaluation runs of the same questions, paired against the first.

    Each difference from the baseline comes with a 95% bootstrap interval over the questions,
    beside the questions won, lost and tied and the cost per question."""
    from compose.eval.compare import DEFAULT_METRICS, CompareError
    from compose.eval.compare_table import compare_command

    try:
        compare_command(runs, console=out, html=html, metrics=metric or DEFAULT_METRICS,
                        primary=primary, markdown=markdown)
    except CompareError as exc:
        fail(str(exc))

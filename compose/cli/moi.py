"""``composerag moi``: tools for Mixture-of-Intervention re-ranking.

``fit-positions`` estimates a generator's slot weights ``a_j`` on a development set and
stores them keyed by model id and slot count, where every ``moi_rerank`` node using that
model finds them.

Usage::

    composerag moi fit-positions --dataset hotpotqa:../shared/data/hotpotqa/dev200.jsonl \\
        --model smollm2-135m --limit 100 --k 5 --m 10 --signal logprob
    composerag moi show-positions
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

moi_app = typer.Typer(help="Mixture-of-Intervention re-ranking: slot weights per model.",
                      no_args_is_help=True)
# The default is spelled out, not read from compose.modules.moi.positions.DEFAULT_STORE: that module
# imports numpy, which every `composerag` start-up would pay for to print this help text
# (tests/test_cli_startup.py checks the two agree).
StoreOption = Annotated[Path | None, typer.Option(
    "--store", help="Slot-weight store (default ~/.cache/composerag/moi_positions.json).")]


@moi_app.command("fit-positions")
def fit_positions(
    dataset: Annotated[str, typer.Option(help="Development set: NAME:PATH or 'demo'.")],
    model: Annotated[str, typer.Option(help="Generator: registry name or GGUF path.")] = (
        "smollm2-135m"),
    limit: Annotated[int, typer.Option(help="Questions to use (the first N).")] = 100,
    k: Annotated[int, typer.Option(help="Passages (slots) per prompt.", min=2)] = 5,
    signal: Annotated[str, typer.Option(
        help="logprob, consistency or oracle (F1 against the dataset's answers).")] = "logprob",
    strategy: Annotated[str, typer.Option(
        help="random (the default) or prior; weights need M > k orders per question, so a "
        "Latin square (cyclic) cannot identify them.")] = "random",
    m: Annotated[int | None, typer.Option(
        help="Orders per question (default 2k).")] = None,
    ridge_lambda: Annotated[float, typer.Option(help="Ridge penalty of the utilities.")] = 0.1,
    store: StoreOption = None,
    index_root: Annotated[Path | None, typer.Option(help="Where pooled indexes live.")] = None,
) -> None:
    """Fit per-slot weights by alternating least squares and store them for the model."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.progress import Progress

    from compose.config import GeneratorConfig, RetrieverConfig, RuntimeConfig
    from compose.corpora.benchmarks import load_benchmark
    from compose.modules.moi.aggregate import fit_slot_weights
    from compose.modules.moi.fit import collect_samples, informative
    from compose.modules.moi.positions import PositionStore
    from compose.modules.moi.rerank import MoiRerank
    from compose.retrieval.store import ensure_index
    from compose.runtime import Runtime

    try:
        module = MoiRerank(signal=signal, strategy=strategy, m=m or 2 * k,
                           ridge_lambda=ridge_lambda)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None
    data = load_benchmark(dataset)
    questions = data.questions[:limit]
    index = ensure_index(data.corpus, data.name, root=index_root, show_progress=False)
    runtime = Runtime(RuntimeConfig(
        generator=GeneratorConfig(model=model, logprobs=module.logprobs, n_ctx=2048),
        retriever=RetrieverConfig(index=str(index))))
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("exploratory passes", total=len(questions))
        samples = collect_samples(runtime, questions, module=module, k=k,
                                  on_sample=lambda _: progress.advance(task))
    if not samples:
        raise typer.BadParameter(f"no question retrieved {k} passages", param_hint="--k")
    try:
        weights = fit_slot_weights([(s.orders, s.scores) for s in samples], ridge_lambda)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--signal") from None
    model_id = runtime.generator.model_id
    prompted = sum(s.tokens_prompted for s in samples)
    evaluated = sum(s.tokens_evaluated for s in samples)
    PositionStore(store).save(model_id, weights, dataset=dataset, questions=len(samples),
                              informative=informative(samples), signal=signal,
                              strategy=strategy)
    typer.echo(json.dumps({"model": model_id, "weights": [round(float(w), 4) for w in weights],
                          "questions": len(samples), "informative": informative(samples),
                          "tokens_prompted": prompted, "tokens_evaluated": evaluated,
                          "store": str(PositionStore(store).path)}))


@moi_app.command("show-positions")
def show_positions(store: StoreOption = None) -> None:
    """Print the stored slot weights of every model."""
    from compose.modules.moi.positions import PositionStore

    typer.echo(json.dumps(PositionStore(store).load(), indent=2))

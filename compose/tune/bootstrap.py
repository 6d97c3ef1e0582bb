"""Training cases from a graph's own successful runs (DSPy's BootstrapFinetune, locally).

A graph is evaluated over training questions with traces saved; for every question whose final
answer scores at or above a threshold, each generator call of each LLM module (its node's
params, the input it got, the output it gave) becomes a case for that module. This is where
the modules without labelled data (retrieval decision, query rewriting, the agent step) get
examples: from runs of the whole graph that ended well. The evaluation files under
``../shared/data/<benchmark>/`` are refused: bootstrapping on them would train on the test.

Usage::

    cases = harvest(Path("runs/tune/boot/compose_rag.jsonl"), "compose_rag", threshold=0.8)
"""

from __future__ import annotations

import json
from pathlib import Path

from compose.graph.load import load_spec
from compose.module import LLMModule
from compose.registry import get_module
from compose.tune.example import ModuleCase

EVALUATION_DIRS = {"hotpotqa", "2wikimultihopqa", "musique", "asqa", "pubmedqa"}


class EvaluationDataError(ValueError):
    pass


def refuse_evaluation_split(dataset: str) -> None:
    """Bootstrapping reads training questions only: a path inside an evaluation split's
    folder (say ``../shared/data/hotpotqa/dev200.jsonl``) is refused."""
    path = Path(dataset.split(":", 1)[-1]).resolve()
    if path.parent.name in EVALUATION_DIRS or dataset == "demo":
        raise EvaluationDataError(
            f"{dataset} is an evaluation split; bootstrap from training questions "
            "(../shared/data/train/...) so held-out scores stay honest")


def row_groups(dataset: str) -> dict[str, str]:
    """Question id -> the group that ``build-data`` gives the same training row
    (``<file name>:<line>``), so a bootstrapped case of a row held out for tuning-validation
    is held out too; empty for a file that is not JSON lines."""
    path = Path(dataset.split(":", 1)[-1])
    if path.suffix != ".jsonl":
        return {}
    from compose.tune.sources import read_rows

    groups = {}
    for number, row in read_rows(path):
        row_id = row.get("_id", row.get("id"))
        if row_id is not None:
            groups[str(row_id)] = f"{path.name}:{number}"
    return groups


def harvest(results: Path, graph: str, *, threshold: float = 0.8, metric: str = "f1",
            overrides: list[str] | None = None,
            groups: dict[str, str] | None = None) -> list[ModuleCase]:
    """The LLM module calls of every run in ``results`` that scored >= ``threshold``.
    ``groups`` (see ``row_groups``) names each question's group; a question it does not
    name is grouped by the results file and its id."""
    traces_file = results.with_suffix(".traces.jsonl")
    if not traces_file.is_file():
        raise FileNotFoundError(f"{traces_file} not found: evaluate with --save-traces")
    spec = load_spec(graph, overrides)
    scores = {}
    with results.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if not record.get("error"):
                scores[record["id"]] = (record.get("metrics") or {}).get(metric)
    cases = []
    with traces_file.open(encoding="utf-8") as handle:
        for line in handle:
            run = json.loads(line)
            score = scores.get(run["id"])
            if score is None or score < threshold:
                continue
            for position, event in enumerate(run["trace"]):
                node = spec.nodes.get(event["node"])
                if node is None or not event.get("llm_calls"):
                    continue  # a node that made no generator call taught nothing
                if not issubclass(get_module(event["module"]), LLMModule):
                    continue
                cases.append(ModuleCase(
                    module=event["module"], params=node.params, input=event["input"],
                    output=event["output"], source=f"{results.name}:{run['id']}:{position}",
                    group=(groups or {}).get(run["id"], f"{results.name}:{run['id']}"),
                    variant="bootstrap"))
    return cases


def write_cases(cases: list[ModuleCase], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(out.name + ".partial")
    staging.write_text("".join(case.model_dump_json() + "\n" for case in cases))
    staging.replace(out)

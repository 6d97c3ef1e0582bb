"""``tune eval``: each tuned module scored alone on the tuning-validation set.

The module runs exactly as in a graph (its own prompt, schema, post-processing) on each held-out
input, and its output is scored against the gold output with the module's own measure:
reading EM/F1 (plus abstention accuracy on unanswerable questions), decomposition coverage of
the gold sub-questions, verification accuracy and AUC, retrieval-decision accuracy. The
verifier's score for the AUC is its probability of "grounded", read from the log-probability
of the true/false token it wrote.

Usage::

    report = evaluate_modules(Path("runs/tune/data/valid.jsonl"), GeneratorConfig(adapter="tuned"))
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from compose.config import GeneratorConfig, RuntimeConfig
from compose.runtime import ModuleContext
from compose.structured import StructuredOutputError
from compose.text import UNKNOWN, exact_match, normalize_answer, token_f1
from compose.tune.dataset import read_examples
from compose.tune.example import TrainingExample, build_module

if TYPE_CHECKING:
    from compose.module import LLMModule

# A scorer reads the fields of one module's Output model (the modules live in modules/,
# which this package's type check sees as Any).
Scorer = Callable[[TrainingExample, Any], dict[str, float]]

COVERED_F1 = 0.6  # a gold sub-question counts as covered by a predicted one this close


class ModuleScores(BaseModel):
    module: str
    n: int
    metrics: dict[str, float]
    failures: int = 0


def score_answer(example: TrainingExample, output: Any) -> dict[str, float]:
    gold = example.output["answer"]
    scores = {"em": exact_match(output.answer, [gold]), "f1": token_f1(output.answer, [gold])}
    if normalize_answer(gold) == UNKNOWN:
        scores["abstain_acc"] = float(output.is_unknown)
    else:
        scores["answered_f1"] = scores["f1"]
        scores["cites_gold"] = float(bool(set(output.citations)
                                          & set(example.output["citations"])))
    return scores


def score_decompose(example: TrainingExample, output: Any) -> dict[str, float]:
    gold = example.output["sub_questions"]
    predicted = output.sub_questions
    covered = sum(max((token_f1(p, [g]) for p in predicted), default=0.0) >= COVERED_F1
                  for g in gold)
    return {"coverage": covered / len(gold), "same_count": float(len(predicted) == len(gold))}


def score_flag(field: str) -> Scorer:
    def score(example: TrainingExample, output: Any) -> dict[str, float]:
        return {"accuracy": float(getattr(output, field) == example.output[field])}
    return score


PRIMARY = {"answer": ("em", "f1"), "decompose": ("coverage", "same_count"),
           "verify": ("accuracy",), "retrieval_decision": ("accuracy",)}
SCORERS: dict[str, Scorer] = {
    "answer": score_answer,
    "decompose": score_decompose,
    "verify": score_flag("grounded"),
    "retrieval_decision": score_flag("retrieve"),
}


def verdict_probability(ctx: ModuleContext, module: LLMModule,
                        example: TrainingExample) -> float | None:
    """P(grounded) from the greedy verdict's true/false token, for the AUC."""
    schema = module.emitted_model().model_json_schema()
    generation = ctx.generator.generate(module.messages(module.Input.model_validate(
        example.input)), json_schema=schema, max_tokens=module.max_tokens, logprobs=True)
    text = generation.text
    if not generation.token_logprobs or ('"grounded": true' not in text
                                         and '"grounded": false' not in text):
        return None
    probability = math.exp(generation.token_logprobs[-2] if len(
        generation.token_logprobs) > 1 else generation.token_logprobs[-1])
    return probability if '"grounded": true' in text else 1 - probability


def auc(labels: list[bool], scores: list[float]) -> float | None:
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def evaluate_modules(valid_file: Path, generator: GeneratorConfig, *,
                     modules: list[str] | None = None, limit: int | None = None,
                     on_start: Callable[[int], None] | None = None,
                     on_example: Callable[[], None] | None = None) -> list[ModuleScores]:
    from compose.runtime import Runtime

    runtime = Runtime(RuntimeConfig(generator=generator))
    examples = [e for e in read_examples(valid_file) if e.module in SCORERS
                and (not modules or e.module in modules)]
    per_module: dict[str, list[TrainingExample]] = defaultdict(list)
    for example in examples:
        if limit is None or len(per_module[example.module]) < limit:
            per_module[example.module].append(example)
    if on_start is not None:
        on_start(sum(len(chosen) for chosen in per_module.values()))
    results = []
    for name, chosen in sorted(per_module.items()):
        sums: dict[str, list[float]] = defaultdict(list)
        failures = 0
        labels, probabilities = [], []
        for example in chosen:
            module = build_module(example.module, example.params)
            ctx = ModuleContext(runtime)
            try:
                output = module(example.input, ctx)
            except StructuredOutputError:  # counted, and scored as wrong
                failures += 1
                for key in PRIMARY[name]:
                    sums[key].append(0.0)
            else:
                for key, value in SCORERS[name](example, output).items():
                    sums[key].append(value)
            if name == "verify":
                probability = verdict_probability(ctx, module, example)
                if probability is not None:
                    labels.append(bool(example.output["grounded"]))
                    probabilities.append(probability)
            if on_example is not None:
                on_example()
        metrics = {key: round(sum(v) / len(v), 4) for key, v in sums.items()}
        if name == "verify":
            area = auc(labels, probabilities)
            if area is not None:
                metrics["auc"] = round(area, 4)
        results.append(ModuleScores(module=name, n=len(chosen), metrics=metrics,
                                    failures=failures))
    return results

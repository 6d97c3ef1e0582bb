"""Position bias of a generator: answer accuracy with the gold passage in each slot 1..k.

    python bench/position_bias.py --dataset hotpotqa:../shared/data/hotpotqa/dev200.jsonl \
        --limit 50 --k 5 --png runs/position_bias.png

Per question, the gold passage is the one that contains the answer (else the first gold
passage); the distractors are the top retrieved non-gold passages (hard distractors from the
pooled index; other gold passages are left out so exactly one passage holds the answer). The
same k passages are shown k times, the gold one moved through slots 1..k, to the ``answer``
module (the generator's final-answer prompt) or, with ``--prompt moi``, to MoI's exploratory
prompt (instructions and question first). Prints EM, token F1 and "hit" (the gold answer
occurs in the reply - kinder to a small model's wordy answers) per slot, and plots them.
The flatter the curve, the less the order of the passages matters to this generator.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from compose.config import GeneratorConfig, RetrieverConfig, RuntimeConfig
from compose.corpora.benchmarks import load_benchmark
from compose.corpus import Passage, QAItem
from compose.modules.answer import Answer
from compose.modules.moi.rerank import MoiRerank
from compose.retrieval.store import ensure_index
from compose.runtime import Runtime
from compose.text import answer_in, exact_match, token_f1


def hit(prediction: str, answers: list[str]) -> float:
    return float(any(answer_in(a, prediction) for a in answers))


def gold_and_distractors(runtime: Runtime, item: QAItem, corpus: dict[str, Passage],
                         k: int) -> tuple[Passage, list[Passage]] | None:
    golds = [corpus[g] for g in item.gold_ids if g in corpus]
    if not golds:
        return None
    gold = next((p for p in golds if hit(p.text, item.answers)), golds[0])
    retrieved = runtime.retriever.search(item.question, k=k + len(golds) + 5)
    distractors = [p for p in retrieved if p.id not in item.gold_ids][: k - 1]
    return (gold, distractors) if len(distractors) == k - 1 else None


def answer_fn(runtime: Runtime, prompt: str, max_chars: int):
    """question, passages -> answer text, through the chosen prompt."""
    if prompt == "answer":
        module = Answer(max_passages=100, max_passage_chars=max_chars)
        return lambda q, ps: module({"question": q, "passages": ps}, runtime.context()).answer
    moi = MoiRerank(max_passage_chars=max_chars, signal="consistency")  # no logprobs needed

    def explore_one(question: str, passages: list[Passage]) -> str:
        return moi.explore(runtime.generator, question, passages,
                           [list(range(len(passages)))])[0].answer
    return explore_one


def measure(runtime: Runtime, questions: list[QAItem], corpus: dict[str, Passage], k: int,
            prompt: str, max_chars: int) -> tuple[list[dict[str, float]], int]:
    """Mean EM / F1 / hit per slot, and how many questions were usable."""
    ask = answer_fn(runtime, prompt, max_chars)
    sums = [{"em": 0.0, "f1": 0.0, "hit": 0.0} for _ in range(k)]
    used = 0
    for item in questions:
        picked = gold_and_distractors(runtime, item, corpus, k)
        if picked is None:
            continue
        gold, distractors = picked
        used += 1
        for slot in range(k):
            shown = [*distractors[:slot], gold, *distractors[slot:]]
            prediction = ask(item.question, shown)
            sums[slot]["em"] += exact_match(prediction, item.answers)
            sums[slot]["f1"] += token_f1(prediction, item.answers)
            sums[slot]["hit"] += hit(prediction, item.answers)
    return [{m: v / max(used, 1) for m, v in s.items()} for s in sums], used


def plot(per_slot: list[dict[str, float]], title: str, path: Path) -> None:
    slots = list(range(1, len(per_slot) + 1))
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for metric, marker in (("hit", "o"), ("f1", "s"), ("em", "^")):
        ax.plot(slots, [s[metric] for s in per_slot], marker=marker, label=metric)
    ax.set_xticks(slots)
    ax.set_xlabel("slot of the gold passage")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hotpotqa:../shared/data/hotpotqa/dev200.jsonl",
                        help="NAME:PATH or 'demo'")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompt", choices=["answer", "moi"], default="answer")
    parser.add_argument("--max-passage-chars", type=int, default=700)
    parser.add_argument("--png", type=Path, default=Path("runs/position_bias.png"))
    args = parser.parse_args()

    data = load_benchmark(args.dataset)
    index = ensure_index(data.corpus, data.name, show_progress=False)
    runtime = Runtime(RuntimeConfig(generator=GeneratorConfig(model=args.model),
                                    retriever=RetrieverConfig(index=str(index))))
    corpus = {p.id: p for p in data.corpus}
    per_slot, used = measure(runtime, data.questions[: args.limit], corpus, args.k,
                             args.prompt, args.max_passage_chars)
    title = (f"{runtime.generator.model_id}, {args.prompt} prompt, {data.name}, "
             f"{used} questions, k={args.k}")
    table = Table(title=f"Position bias: {title}")
    for column in ("gold slot", "EM", "F1", "hit"):
        table.add_column(column, justify="right")
    for slot, scores in enumerate(per_slot, start=1):
        table.add_row(str(slot), *(f"{scores[m]:.3f}" for m in ("em", "f1", "hit")))
    Console().print(table)
    plot(per_slot, title, args.png)
    Console().print(f"plot: {args.png}")


if __name__ == "__main__":
    main()

"""Per-module error analysis of traced evaluation runs: which module failed first?

    composerag eval compose_rag --dataset hotpotqa:PATH --limit 20 --save-traces
    python bench/error_analysis.py runs/eval/compose_rag__hotpotqa.jsonl

For each wrong answer (EM 0) the failure is attributed, in pipeline order, to the first stage
that provably lost the answer, using the gold answers and gold passages:

- decomposition: the sub-questions share under 30% of the question's content words (a
  lexical heuristic for a plan that lost the question's entities);
- retrieval: no gold passage was ever retrieved;
- reading: a gold passage was retrieved but no hop's answer contains the gold answer;
- verification: verify rejected a hop answer that contains the gold answer, or accepted one
  that does not while the gold answer was in its passages;
- synthesis: some hop answered correctly but the final answer is wrong (or abstained).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from compose.text import answer_in, answer_tokens


def contains_gold(text: str, answers: list[str]) -> bool:
    return any(answer_in(a, text) for a in answers)


STOPWORDS = frozenset({
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "was", "were",
    "is", "are", "did", "does", "do", "for", "from", "with", "that", "this", "and", "the",
    "of", "in", "on", "at", "to", "by", "as",
})


def content_words(text: str) -> set[str]:
    return {w for w in answer_tokens(text) if len(w) > 2 and w not in STOPWORDS}


def attribute(record: dict, trace: list[dict]) -> str:
    answers, gold = record["answers"], set(record["gold_ids"])
    plans = [e["output"]["sub_questions"] for e in trace if e["module"] == "decompose"]
    if plans:
        asked = content_words(record["question"])
        planned = content_words(" ".join(plans[0]))
        if asked and len(asked & planned) / len(asked) < 0.3:
            return "decomposition"
    retrieved = {p["id"] for e in trace if e["module"] == "retrieve"
                 for p in e["output"]["passages"]}
    if gold and not retrieved & gold:
        return "retrieval"
    hop_answers = [e["output"]["answer"] for e in trace if e["module"] == "answer"]
    if not any(contains_gold(a, answers) for a in hop_answers):
        return "reading"
    for event in trace:
        if event["module"] != "verify":
            continue
        correct = contains_gold(event["input"].get("answer", ""), answers)
        passages = " ".join(p.get("text", "") for p in event["input"].get("passages", []))
        if correct and not event["output"]["grounded"]:
            return "verification (rejected a correct answer)"
        if not correct and event["output"]["grounded"] and contains_gold(passages, answers):
            return "verification (accepted a wrong answer)"
    return "synthesis"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args()
    records = {r["id"]: r for r in map(json.loads, args.results.read_text().splitlines())}
    traces_path = args.results.with_suffix(".traces.jsonl")
    traces = [json.loads(line) for line in traces_path.read_text().splitlines()][: args.limit]
    causes: Counter[str] = Counter()
    for item in traces:
        record = records.get(item["id"])
        if record is None:
            continue
        if record.get("error"):
            causes["error: " + record["error"].split(":")[0]] += 1
        elif record["metrics"].get("em") == 1.0:
            causes["correct"] += 1
        else:
            causes[attribute(record, item["trace"])] += 1
    table = Table(title=f"First failing stage over {sum(causes.values())} traced questions "
                  f"({args.results.name})")
    table.add_column("stage")
    table.add_column("questions", justify="right")
    for cause, count in causes.most_common():
        table.add_row(cause, str(count))
    Console(width=150).print(table)


if __name__ == "__main__":
    main()

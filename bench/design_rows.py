"""Write the tuning-validation rows of the HotpotQA and 2WikiMultiHopQA training files as
evaluation datasets, so graph design choices are made on rows that are neither trained on nor
part of a dev split (the dev splits only measure the choice afterwards).

    python bench/design_rows.py [--train-dir ../shared/data/train] [--out runs/design]
    composerag eval run compose_rag --dataset hotpotqa:runs/design/hotpot_valid.jsonl --no-cache
    composerag eval run compose_rag --dataset 2wikimultihopqa:runs/design/2wiki_valid.jsonl

The validation rows are the ones ``composerag tune build-data`` holds out (the same hash of
``FILE:LINE``). 2Wiki rows already have the benchmark's shape. A HotpotQA train row has only
its gold evidence sentences, so each becomes a row whose context is those sentences among 8
sentences of other rows (seeded, so the README's design figures are reproducible).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from compose.tune.dataset import is_validation
from compose.tune.sources import read_rows

TWOWIKI = "2wikimultihopqa_train_migres.jsonl"
HOTPOT = "hotpotqa_train_evidence_ecm.jsonl"
DISTRACTORS = 8


def validation_rows(path: Path) -> list[dict[str, Any]]:
    return [row for number, row in read_rows(path) if is_validation(f"{path.name}:{number}")]


def hotpot_design_rows(path: Path) -> list[dict[str, Any]]:
    """Benchmark-shaped rows (``context`` of [title, [sentence]] pairs) from evidence rows."""
    rows = list(read_rows(path))
    pool = [(number, sentence) for number, row in rows for sentence in row["evidence"]]
    rng = random.Random(0)
    out = []
    for number, row in rows:
        if not is_validation(f"{path.name}:{number}"):
            continue
        gold = [[f"hp{number}-{i}", [s]] for i, s in enumerate(row["evidence"])]
        # Draw 10 and drop this row's own sentences: at most 8 distractors remain.
        drawn = rng.sample(pool, DISTRACTORS + 2)
        distractors = [[f"hp{other}-x{j}", [s]] for j, (other, s) in enumerate(drawn)
                       if other != number][:DISTRACTORS]
        context = gold + distractors
        rng.shuffle(context)
        out.append({"_id": f"hp{number}", "question": row["question"],
                    "answer": row["answer"], "type": row.get("type"),
                    "level": row.get("level"),
                    "supporting_facts": [[title, 0] for title, _ in gold],
                    "context": context})
    return out


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-dir", type=Path, default=Path("../shared/data/train"))
    parser.add_argument("--out", type=Path, default=Path("runs/design"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    twowiki = validation_rows(args.train_dir / TWOWIKI)
    hotpot = hotpot_design_rows(args.train_dir / HOTPOT)
    write_jsonl(twowiki, args.out / "2wiki_valid.jsonl")
    write_jsonl(hotpot, args.out / "hotpot_valid.jsonl")
    print(f"{args.out / '2wiki_valid.jsonl'}: {len(twowiki)} rows; "
          f"{args.out / 'hotpot_valid.jsonl'}: {len(hotpot)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

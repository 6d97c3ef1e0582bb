"""Compare evaluation runs of the same questions, paired against the first (the baseline).

    python bench/compare_runs.py "retrieval order=runs/eval/moi_keep.jsonl" \\
        "MoI M=k=runs/eval/moi_mk.jsonl" ... [--markdown] [--html report.html]

Kept for the commands quoted in the README's tables; the comparison itself is
``compose.eval.compare`` (``composerag eval compare`` runs the same code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from compose.eval.compare import DEFAULT_METRICS, CompareError
from compose.eval.compare_table import compare_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+",
                        help="LABEL=PATH (or PATH) of a results file; the first is the baseline")
    parser.add_argument("--markdown", action="store_true",
                        help="print a Markdown table (for notes and the README)")
    parser.add_argument("--html", type=Path, help="also write a self-contained HTML report")
    parser.add_argument("--metric", action="append", dest="metrics",
                        help=f"a metric to compare (repeatable; default: "
                             f"{', '.join(DEFAULT_METRICS)})")
    args = parser.parse_args(argv)
    try:
        compare_command(args.runs, console=Console(width=200), html=args.html,
                        metrics=args.metrics or DEFAULT_METRICS, markdown=args.markdown)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

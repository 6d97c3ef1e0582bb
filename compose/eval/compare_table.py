"""The paired comparison as a table (terminal, Markdown; the HTML report reuses the cells) and
the ``composerag eval compare`` command that prints it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from compose.eval.compare import DEFAULT_METRICS, Comparison, compare_runs, load_runs


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def table_cells(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """The paired table as text: its column headers and one row per run, shared by the
    terminal, Markdown and HTML forms."""
    columns = ["run", "errors"]
    for name in comparison.metrics:
        columns += [name, f"Δ{name} [95% CI]"]
    columns += [f"{comparison.primary} won/lost/tied", "calls/q", "tokens prompted/q",
                "tokens evaluated/q", "tokens out/q", "wall s/q"]
    n = len(comparison.question_ids)
    rows = []
    for index, run in enumerate(comparison.runs):
        row = [run.label, str(run.errors)]
        for name in comparison.metrics:
            stat = run.metrics[name]
            shown = "n/a" if stat.mean is None else f"{stat.mean:.3f}"
            row.append(shown if stat.scored in (0, n) else f"{shown} (n={stat.scored})")
            if not index:
                row.append("baseline")
            elif stat.delta is None or stat.low is None or stat.high is None:
                row.append("n/a")  # the three come together: no paired question, none
            else:
                row.append(f"{_signed(stat.delta)} [{_signed(stat.low)}, {_signed(stat.high)}]")
        row.append(f"{run.won}/{run.lost}/{run.tied}" if index else "baseline")
        cost = run.cost
        row += [f"{cost.llm_calls:.2f}", f"{cost.tokens_in:,.0f}",
                f"{cost.tokens_evaluated:,.0f}", f"{cost.tokens_out:,.0f}",
                f"{cost.seconds:.2f}"]
        rows.append(row)
    return columns, rows


def as_markdown(comparison: Comparison) -> str:
    columns, rows = table_cells(comparison)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def as_rich(comparison: Comparison) -> Table:
    columns, rows = table_cells(comparison)
    table = Table(title=escape(comparison.title))
    for column in columns:
        table.add_column(escape(column), justify="left" if column == "run" else "right")
    for row in rows:
        table.add_row(*map(escape, row))
    return table


def compare_command(specs: Sequence[str], *, console: Console, html: Path | None = None,
                    metrics: Sequence[str] = DEFAULT_METRICS, primary: str | None = None,
                    markdown: bool = False) -> Comparison:
    """``composerag eval compare``: print the paired table (Markdown with ``markdown``) and,
    with ``html``, write the self-contained report there. Raises :class:`CompareError` on
    bad input, before anything is written."""
    comparison = compare_runs(load_runs(specs), metrics=metrics, primary=primary)
    if markdown:
        console.print(f"{comparison.title}\n\n{as_markdown(comparison)}", markup=False,
                      highlight=False, soft_wrap=True)
    else:  # a pipe or file has no width to respect; a terminal's wraps the table
        console.print(as_rich(comparison), width=None if console.is_terminal else 200)
    for note in comparison.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    if html is not None:
        from compose.eval.compare_html import write_report

        write_report(comparison, html)
        console.print(f"[dim]report: {escape(str(html))}[/]")
    return comparison

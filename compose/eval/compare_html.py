"""The comparison of evaluation runs as one self-contained HTML file, to attach or archive.

Everything is inline: the CSS, and the two figures as SVG (matplotlib, drawn on an Agg canvas
without pyplot, so no display and no process-wide backend are touched). A Content-Security-
Policy forbids loading anything, so a report opened years later shows what it showed the day
it was written. Every string taken from the results files (labels, paths, node names) is
escaped; in the figures matplotlib writes text as escaped SVG ``<text>``. matplotlib is
imported only here, when a report is asked for, so the CLI starts without it.
"""

from __future__ import annotations

import html
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from compose.eval.compare import CompareError, Comparison
from compose.eval.compare_table import table_cells

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; }
td { white-space: nowrap; } .ci { font-size: 0.85em; font-weight: normal; color: #555; }
.scroll { overflow-x: auto; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; }
tr.baseline td { background: #fafafa; font-style: italic; }
td.better { color: #11772b; font-weight: 600; } td.worse { color: #b3261e; font-weight: 600; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
figcaption, .notes, .lead { color: #555; font-size: 0.9em; }
code { font-size: 0.95em; }
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
OUTSIDE_NODES = "outside nodes"


def _matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CompareError("--html draws its figures with matplotlib, which is not installed: "
                           "pip install 'composerag[bench]'") from None


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _svg(figure: Figure) -> str:
    """The figure as an inline ``<svg>`` element: text as ``<text>``, ids salted so the
    report's bytes depend on the data alone, no XML prolog or metadata block."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "composerag"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None,
                                                       "Format": None, "Type": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def node_cost_svg(comparison: Comparison) -> str | None:
    """Stacked bars, one per run: mean seconds per question in each node, and the rest of
    the wall time (graph overhead, scoring) as "outside nodes". None when no record holds
    per-node timings."""
    runs = comparison.runs
    # the longest pipeline first: records list nodes in the order they ran
    nodes = list(dict.fromkeys(n for run in sorted(runs, key=lambda r: -len(r.node_seconds))
                               for n in run.node_seconds))
    if not nodes:
        return None
    figure = _figure(9, 1.6 + 0.45 * len(runs))
    axes = figure.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(nodes))]
    left = [0.0] * len(runs)
    labels = [run.label for run in runs]
    for node, color in zip([*nodes, OUTSIDE_NODES], [*colors, "#cccccc"], strict=True):
        if node == OUTSIDE_NODES:
            widths = [max(0.0, run.cost.seconds - sum(run.node_seconds.values()))
                      for run in runs]
        else:
            widths = [run.node_seconds.get(node, 0.0) for run in runs]
        axes.barh(labels, widths, left=left, color=color, label=node, height=0.6)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axes.invert_yaxis()
    axes.set_xlabel("mean seconds per question")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    axes.grid(axis="x", alpha=0.3)
    return _svg(figure)


def tradeoff_svg(comparison: Comparison) -> str:
    """Each run as one labelled point: its mean primary metric against its mean wall seconds
    per question; the baseline is the square."""
    figure = _figure(7, 4.5)
    axes = figure.add_subplot()
    for index, run in enumerate(comparison.runs):
        score = run.metrics[comparison.primary].mean
        if score is None:
            continue
        axes.scatter([run.cost.seconds], [score], s=60, color=f"C{index % 10}",
                     marker="s" if index == 0 else "o", zorder=3)
        axes.annotate(run.label, (run.cost.seconds, score), textcoords="offset points",
                      xytext=(6, 5), fontsize="small")
    axes.set_xlabel("mean wall seconds per question")
    axes.set_ylabel(f"mean {comparison.primary}")
    axes.margins(0.2)
    axes.grid(alpha=0.3)
    return _svg(figure)


def _cell_classes(comparison: Comparison, index: int) -> list[str]:
    """A class per table cell: a difference whose interval excludes zero is better or worse."""
    classes = ["", ""]
    for name in comparison.metrics:
        stat = comparison.runs[index].metrics[name]
        verdict = ""
        if index and stat.low is not None and stat.high is not None:
            verdict = "better" if stat.low > 0 else "worse" if stat.high < 0 else ""
        classes += ["", verdict]
    return classes + [""] * 6


def _cell(text: str, css: str) -> str:
    """A table cell; a difference keeps its interval on a second line, so the table fits."""
    value, sep, interval = text.partition(" [")
    shown = (f'{html.escape(value)}<br><span class="ci">[{html.escape(interval)}</span>'
             if sep and interval.endswith("]") else html.escape(text))
    return f'<td class="{css}">{shown}</td>' if css else f"<td>{shown}</td>"


def _table(comparison: Comparison) -> str:
    columns, rows = table_cells(comparison)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for index, row in enumerate(rows):
        cells = "".join(_cell(text, css) for text, css in
                        zip(row, _cell_classes(comparison, index), strict=True))
        body.append(f'<tr class="baseline">{cells}</tr>' if index == 0 else f"<tr>{cells}</tr>")
    return (f'<div class="scroll"><table class="paired"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _files(comparison: Comparison) -> str:
    rows = "".join(f"<tr><td>{html.escape(run.label)}</td><td><code>{html.escape(str(run.path))}"
                   f"</code></td><td>{run.records}</td></tr>" for run in comparison.runs)
    return ('<table class="files"><thead><tr><th>run</th><th>results file</th>'
            f"<th>records</th></tr></thead><tbody>{rows}</tbody></table>")


def render_report(comparison: Comparison) -> str:
    """The whole HTML document."""
    _matplotlib()
    nodes = node_cost_svg(comparison)
    node_figure = (f'<figure id="node-cost">{nodes}<figcaption>Mean seconds per question spent '
                   "in each node (from the records' <code>node_latency_s</code>); grey is wall "
                   "time outside any node.</figcaption></figure>" if nodes else
                   '<p class="notes">The records hold no per-node timings.</p>')
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in comparison.notes)
    primary = html.escape(comparison.primary)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>Comparison of {len(comparison.runs)} evaluation runs</title>
<style>{CSS}</style>
</head>
<body>
<h1>Comparison of {len(comparison.runs)} evaluation runs</h1>
<p class="lead">{html.escape(comparison.title)}. A question is won when the run scores higher
{primary} on it than the baseline; a difference in bold is one whose interval excludes zero.</p>
{_table(comparison)}
{f'<ul class="notes">{notes}</ul>' if notes else ''}
<h2>Cost per question by node</h2>
{node_figure}
<h2>{primary} against seconds per question</h2>
<figure id="tradeoff">{tradeoff_svg(comparison)}<figcaption>Each run's mean {primary} over the
compared questions against its mean wall seconds per question; the square is the baseline.
</figcaption></figure>
<h2>Runs</h2>
{_files(comparison)}
</body>
</html>
"""


def write_report(comparison: Comparison, path: Path) -> None:
    """Write the report to ``path`` atomically (a half-written report is never left)."""
    text = render_report(comparison)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)

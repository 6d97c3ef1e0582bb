"""``composerag eval compare``: runs paired by question, bootstrap intervals, won/lost/tied,
refused inputs, and the self-contained HTML report (parsed here, rendered in headless Chromium
when one is installed)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from compose.api import load_graph
from compose.corpora.demo import load_demo
from compose.eval.compare import (
    CompareError,
    compare_runs,
    load_run,
    load_runs,
    paired_interval,
    parse_run_spec,
)
from compose.eval.compare_html import render_report, write_report
from compose.eval.compare_table import compare_command, table_cells
from compose.eval.question import evaluate_one
from compose.eval.runner import run_eval
from tests.conftest import scripted_runtime


def record(qid: str, em: float | None, f1: float | None, **extra) -> dict:
    """The fields of a runner record that a comparison reads."""
    return {"id": qid, "question": f"question {qid}", "error": None,
            "metrics": {"em": em, "f1": f1}, "llm_calls": 1, "tokens_in": 100,
            "tokens_out": 10, "wall_s": 1.0, "node_latency_s": {"answer": 0.75}, **extra}


def write(path: Path, records: list[dict], dataset: str | None = None) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    if dataset:
        path.with_suffix(".meta.json").write_text(json.dumps({"dataset": dataset}))
    return path


def runs_of(tmp_path: Path, **named: list[dict]):
    return load_runs([f"{label}={write(tmp_path / f'run{n}.jsonl', records)}"
                      for n, (label, records) in enumerate(named.items())])


def console() -> Console:
    return Console(file=io.StringIO(), width=250)


# --- the comparison ---------------------------------------------------------------------


def test_won_lost_tied_and_deltas_match_a_hand_count(tmp_path: Path) -> None:
    base = [record("a", 1, 1.0), record("b", 0, 0.5), record("c", 0, 0.0), record("d", 1, 1.0)]
    other = [record("a", 1, 1.0), record("b", 1, 1.0), record("c", 0, 0.2),
             record("d", 0, 0.4, error="boom")]
    comparison = compare_runs(runs_of(tmp_path, base=base, other=other))
    stats = comparison.runs[1]
    # f1: a tied, b won (+0.5), c won (+0.2), d lost (-0.6)
    assert (stats.won, stats.lost, stats.tied) == (2, 1, 1)
    assert stats.metrics["f1"].delta == pytest.approx((0.5 + 0.2 - 0.6) / 4)
    assert stats.metrics["em"].delta == pytest.approx(0.0)
    assert stats.metrics["f1"].mean == pytest.approx(0.65)
    assert stats.errors == 1
    assert comparison.baseline.metrics["f1"].delta is None
    low, high = stats.metrics["f1"].low, stats.metrics["f1"].high
    assert low < stats.metrics["f1"].delta < high
    columns, rows = table_cells(comparison)
    cells = dict(zip(columns, rows[1], strict=True))
    assert cells["f1 won/lost/tied"] == "2/1/1" and cells["errors"] == "1"
    assert cells["Δf1 [95% CI]"].startswith("+0.025 [")
    assert dict(zip(columns, rows[0], strict=True))["Δf1 [95% CI]"] == "baseline"


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible() -> None:
    diffs = np.array([1.0] * 30 + [0.0] * 70)
    low, high = paired_interval(diffs)
    assert 0.15 < low < 0.3 < high < 0.45
    assert paired_interval(diffs) == (low, high)
    assert paired_interval(np.zeros(5)) == (0.0, 0.0)
    # drawn in blocks: the interval of a long run comes from all the samples
    long_low, long_high = paired_interval(np.tile(diffs, 300), samples=2_000)
    assert 0.29 < long_low < 0.3 < long_high < 0.31
    with pytest.raises(ValueError, match="no paired"):
        paired_interval(np.array([]))


def test_only_common_questions_are_paired_and_the_cut_is_noted(tmp_path: Path) -> None:
    base = [record("a", 1, 1), record("b", 0, 0.5), record("c", 0, 0)]
    in_progress = [
        record("b", 1, 1, llm_calls=6, tokens_in=600,
               outputs={"tokens_prompted": 500, "tokens_evaluated": 300}),
        record("a", 0, 0),
    ]
    comparison = compare_runs(runs_of(tmp_path, base=base, new=in_progress))
    assert comparison.question_ids == ["a", "b"]  # in the baseline's order
    assert comparison.title.startswith("2 questions present in every run")
    assert comparison.notes == ["base: 1 of its 3 questions are missing from another run and "
                                "left out"]
    cost = comparison.runs[1].cost
    # a: 100 prompted, all evaluated; b: 600 prompted, 200 of them reused
    assert (cost.tokens_in, cost.tokens_evaluated, cost.llm_calls) == (350, 250, 3.5)


def test_metric_missing_on_some_questions_is_paired_where_both_score(tmp_path: Path) -> None:
    base = [record("a", 1, 1, metrics={"recall@5": 1.0}), record("b", 0, 0,
                                                                  metrics={"recall@5": None})]
    other = [record("a", 1, 1, metrics={"recall@5": 0.5}), record("b", 0, 0,
                                                                   metrics={"recall@5": 1.0})]
    comparison = compare_runs(runs_of(tmp_path, base=base, other=other), metrics=["recall@5"])
    stat = comparison.runs[1].metrics["recall@5"]
    assert (stat.mean, stat.scored, stat.delta) == (0.75, 2, -0.5)  # delta over a alone
    assert comparison.baseline.metrics["recall@5"].scored == 1
    assert comparison.primary == "recall@5"
    _, rows = table_cells(comparison)
    assert rows[0][2] == "1.000 (n=1)"


def test_per_node_seconds_are_means_over_the_compared_questions(tmp_path: Path) -> None:
    base = [record("a", 1, 1, node_latency_s={"retrieve": 0.2, "answer": 1.0}),
            record("b", 1, 1, node_latency_s={"answer": 3.0})]
    comparison = compare_runs(runs_of(tmp_path, base=base, same=base))
    assert comparison.baseline.node_seconds == {"retrieve": 0.1, "answer": 2.0}


# --- refused inputs -----------------------------------------------------------------------


def test_missing_and_foreign_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CompareError, match="no results file at"):
        load_run(tmp_path / "nowhere.jsonl")
    with pytest.raises(CompareError, match="is not a file"):
        load_run(tmp_path)
    prose = tmp_path / "notes.md"
    prose.write_text("# notes\nnot json\n")
    with pytest.raises(CompareError, match=r"not an evaluation results file \(.*notes.md:1"):
        load_run(prose)
    traces = write(tmp_path / "r.traces.jsonl", [{"id": "a", "question": "q", "trace": []}])
    with pytest.raises(CompareError, match="traces file"):
        load_run(traces)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(CompareError, match="no complete record"):
        load_run(empty)


def test_a_run_being_written_is_read_without_being_repaired(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    text = json.dumps(record("a", 1, 1)) + "\nnot json\n" + '{"id": "b", "metr'
    path.write_text(text)
    run = load_run(path)
    assert list(run.records) == ["a"] and run.skipped_lines == 1
    assert path.read_text() == text  # the torn line may be mid-write: never cut here


def test_runs_that_cannot_be_paired_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CompareError, match="share no question ids"):
        compare_runs(runs_of(tmp_path, one=[record("a", 1, 1)], two=[record("b", 1, 1)]))
    with pytest.raises(CompareError, match="at least two runs"):
        compare_runs(runs_of(tmp_path, one=[record("a", 1, 1)]))
    other_question = record("a", 1, 1, question="something else")
    with pytest.raises(CompareError, match="different benchmarks"):
        compare_runs(runs_of(tmp_path, one=[record("a", 1, 1)], two=[other_question]))
    with pytest.raises(CompareError, match="no run records the metric.*accuracy"):
        compare_runs(runs_of(tmp_path, one=[record("a", 1, 1)], two=[record("a", 1, 1)]),
                     metrics=["accuracy"])
    with pytest.raises(CompareError, match="primary metric 'f1' is not among"):
        compare_runs(runs_of(tmp_path, one=[record("a", 1, 1)], two=[record("a", 1, 1)]),
                     metrics=["em"], primary="f1")


def test_runs_of_different_benchmarks_are_refused_by_their_sidecars(tmp_path: Path) -> None:
    one = write(tmp_path / "one.jsonl", [record("a", 1, 1)], dataset="hotpotqa:/data/h.json")
    two = write(tmp_path / "two.jsonl", [record("a", 1, 1)], dataset="musique:/data/m.json")
    same = write(tmp_path / "same.jsonl", [record("a", 0, 0)], dataset="hotpotqa:/other.json")
    with pytest.raises(CompareError, match=r"one \(hotpotqa\), two \(musique\)"):
        compare_runs(load_runs([str(one), str(two)]))
    assert compare_runs(load_runs([str(one), str(same)])).runs[1].lost == 1


def test_labels_come_from_specs_and_must_differ(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    inner = write(tmp_path / "x" / "run.jsonl", [record("a", 1, 1)])
    outer = write(tmp_path / "run.jsonl", [record("a", 1, 1)])
    assert parse_run_spec(str(outer)) == ("run", outer)
    assert parse_run_spec(f"MoI M=k={outer}") == ("MoI M=k", outer)
    with pytest.raises(CompareError, match="two runs are labelled 'run'"):
        load_runs([str(inner), str(outer)])
    assert [r.label for r in load_runs([f"a={inner}", str(outer)])] == ["a", "run"]


# --- the command and the report -------------------------------------------------------------


class Report(HTMLParser):
    """What a report holds: table rows by class, figures, and every URL it would load."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.rows: list[list[str]] = []
        self.figures: list[str] = []
        self.texts: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        # what a page would fetch: a link attribute that is not a fragment of the page
        # itself, or any address outside the xmlns declarations (names, not fetched)
        self.urls += [v for k, v in attrs if v and (
            k in ("src", "href", "xlink:href", "action", "srcset", "data") and v[0] != "#"
            or "//" in v and not k.startswith("xmlns"))]
        if tag == "table":
            self._table = values.get("class")
        elif tag == "tr" and self._table == "paired":
            self.rows.append([])
        elif tag == "td" and self._table == "paired":
            self._cell = []
        elif tag == "figure":
            self.figures.append(values.get("id") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parsed(text: str) -> Report:
    report = Report()
    report.feed(text)
    return report


def test_report_is_self_contained_with_a_row_per_run_and_both_figures(tmp_path: Path) -> None:
    hostile = "<script>alert(1)</script>"
    base = [record("a", 1, 1, node_latency_s={"retrieve": 0.1, "answer": 0.5}),
            record("b", 0, 0.5, node_latency_s={"retrieve": 0.1, "answer": 0.7})]
    other = [record("a", 1, 1, node_latency_s={"retrieve": 0.1, "<b>rerank</b>": 2.0},
                    wall_s=3.0),
             record("b", 1, 1, node_latency_s={"retrieve": 0.1, "<b>rerank</b>": 2.2},
                    wall_s=3.0)]
    runs = runs_of(tmp_path, baseline=base, **{hostile: other})
    text = render_report(compare_runs(runs))
    report = parsed(text)
    assert "script" not in report.tags and "link" not in report.tags
    assert report.urls == []
    assert text.count("url(") == text.count("url(#") and "@import" not in text
    assert [row[0] for row in report.rows if row] == ["baseline", hostile]
    assert report.rows[2][report.rows[2].index("+0.250[+0.000, +0.500]") - 1] == "1.000"
    assert report.figures == ["node-cost", "tradeoff"]
    assert report.tags.count("svg") == 2
    # labels and node names from the files are text in the page and in the SVG, not markup
    assert text.count(hostile) == 0 and "<b>rerank" not in text
    assert report.texts.count(hostile) >= 3  # the table, the tradeoff label, the files table
    assert "<b>rerank</b>" in report.texts  # the legend entry, escaped


def test_report_without_node_timings_says_so(tmp_path: Path) -> None:
    rows = [record("a", 1, 1, node_latency_s={})]
    report = parsed(render_report(compare_runs(runs_of(tmp_path, one=rows, two=rows))))
    assert report.figures == ["tradeoff"]
    assert any("no per-node timings" in t for t in report.texts)


def test_command_prints_markdown_and_writes_the_report(tmp_path: Path) -> None:
    one = write(tmp_path / "one.jsonl", [record("a", 1, 1), record("b", 0, 0)])
    two = write(tmp_path / "two.jsonl", [record("a", 1, 1), record("b", 1, 1)])
    html = tmp_path / "out" / "report.html"
    shown = console()
    compare_command([str(one), str(two)], console=shown, html=html, markdown=True)
    printed = shown.file.getvalue()
    assert "| run | errors | em | Δem [95% CI] |" in printed
    assert "| two | 0 | 1.000 | +0.500 [+0.000, +1.000] |" in printed
    assert f"report: {html}" in printed
    assert [row[0] for row in parsed(html.read_text()).rows if row] == ["one", "two"]
    assert not list(html.parent.glob("*.partial"))
    with pytest.raises(CompareError, match="no results file"):
        compare_command([str(one), str(tmp_path / "gone.jsonl")], console=console(),
                        html=tmp_path / "never.html")
    assert not (tmp_path / "never.html").exists()


def scripted_oracle(demo_index: Path, answers: dict[str, str]):
    """naive_rag answering each demo question with its gold answer."""
    def reply(messages):
        prompt = messages[-1].content
        return {"answer": next(a for q, a in answers.items() if q in prompt), "citations": [1]}
    return load_graph("naive_rag", runtime=scripted_runtime(reply, demo_index))


def test_a_real_model_run_against_a_scripted_oracle(tmp_path: Path, demo_index: Path) -> None:
    """A results file written by the runner with the embedded SmolLM2 against one of the same
    questions scored perfectly: the oracle never loses, and both runs' node costs are read."""
    real = tmp_path / "smollm2.jsonl"
    run_eval("naive_rag", "demo", out=real, limit=2, cache=False,
             index_root=demo_index.parent, show_progress=False)
    questions = load_demo().questions[:2]
    graph = scripted_oracle(demo_index, {q.question: q.answers[0] for q in questions})
    oracle = tmp_path / "oracle.jsonl"
    with oracle.open("w", encoding="utf-8") as handle:
        for item in questions:
            done = evaluate_one(graph, item, 5, ["em", "f1"])
            done.pop("trace")  # as the runner writes it
            handle.write(json.dumps(done) + "\n")
    comparison = compare_runs(load_runs([str(real), str(oracle)]))
    stats = comparison.runs[1]
    assert stats.metrics["f1"].mean == 1.0 and stats.lost == 0 and stats.won + stats.tied == 2
    assert stats.metrics["f1"].delta >= 0
    for run in comparison.runs:
        assert set(run.node_seconds) == {"retrieve", "answer"}
    assert comparison.baseline.cost.llm_calls == 1 and comparison.baseline.cost.tokens_in > 0
    report = parsed(render_report(comparison))
    assert [row[0] for row in report.rows if row] == ["smollm2", "oracle"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH to render the report")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    from matplotlib.image import imread

    base = [record("a", 1, 1, node_latency_s={"retrieve": 0.1, "answer": 0.5}),
            record("b", 0, 0.5, node_latency_s={"retrieve": 0.1, "answer": 0.7})]
    better = [record("a", 1, 1, wall_s=2.0), record("b", 1, 1, wall_s=2.0)]
    html = tmp_path / "report.html"
    write_report(compare_runs(runs_of(tmp_path, base=base, better=better)), html)
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([*command, "--dump-dom", html.as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    report = parsed(dom)
    assert [row[0] for row in report.rows if row] == ["base", "better"]
    assert report.tags.count("svg") == 2 and "better" in report.texts
    shot = tmp_path / "report.png"
    subprocess.run([*command, f"--screenshot={shot}", "--window-size=1200,1600",
                    html.as_uri()], capture_output=True, timeout=120, check=True)
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1600, 1200)
    ink = (pixels.min(axis=2) < 0.5).mean()  # the share of dark pixels: text, bars, axes
    assert 0.005 < ink < 0.5

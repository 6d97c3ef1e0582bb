"""No user data destroyed or duplicated: index output directories, results-file lock, damaged
results lines. None of these needs the language model; index builds use given vectors except
one CLI build (three passages)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from compose.api import load_graph
from compose.cli.main import app
from compose.corpus import Passage
from compose.eval import runner
from compose.eval.results_file import (
    ResultsFileError,
    ResultsLockedError,
    drop_records,
    read_done,
    results_lock,
)
from compose.retrieval import index_output
from compose.retrieval.index import LoadedIndex, build_index
from compose.retrieval.index_output import IndexOutputError
from tests.conftest import scripted_runtime

REPO = Path(__file__).resolve().parents[1]
cli = CliRunner()


def invoke(*args: str):
    result = cli.invoke(app, list(args), catch_exceptions=False)
    return result, " ".join(result.output.split())


def make_passages(n: int) -> list[Passage]:
    return [Passage(id=f"p{i}", title="T", text=f"boat number {i}") for i in range(n)]


def unit_vectors(n: int) -> np.ndarray:
    vectors = np.random.default_rng(n).normal(size=(n, 8)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build(out: str | Path, n: int = 3):
    return build_index(make_passages(n), out, vectors=unit_vectors(n), show_progress=False)


def write_corpus(path: Path, n: int = 3) -> Path:
    path.write_text("".join(p.model_dump_json() + "\n" for p in make_passages(n)))
    return path


# index build: only a new or empty directory, or an index, is written


def test_out_dir_with_a_user_file_survives(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.txt").write_text("k\n")
    with pytest.raises(IndexOutputError, match=r"not part of an index \(a.txt\)"):
        build(tmp_path / "x")
    assert (tmp_path / "x" / "a.txt").read_text() == "k\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no staging left behind


def test_cli_refuses_a_user_directory_and_keeps_it(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.txt").write_text("k\n")
    result, text = invoke("index", "build", str(write_corpus(tmp_path / "c.jsonl")),
                          str(tmp_path / "x"))
    assert result.exit_code == 1
    assert "error: refusing to write an index into" in text and "a.txt" in text
    assert (tmp_path / "x" / "a.txt").read_text() == "k\n"


def test_current_directory_is_refused_even_when_empty(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(IndexOutputError, match="it is the current directory"):
        build(".")
    (work / "keep.txt").write_text("mine")
    corpus = write_corpus(tmp_path / "c.jsonl")
    result, text = invoke("index", "build", str(corpus), ".")
    assert result.exit_code == 1 and "it is the current directory" in text
    assert sorted(p.name for p in work.iterdir()) == ["keep.txt"]


def test_parents_of_the_current_directory_home_and_root_are_refused(tmp_path, monkeypatch):
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    with pytest.raises(IndexOutputError, match="contains the current directory"):
        build(tmp_path / "a")
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(IndexOutputError, match="it is the home directory"):
        build("~")
    with pytest.raises(IndexOutputError, match="refusing"):
        index_output.output_state("/")  # only the check: never point a build at /


def test_a_file_and_an_index_with_extra_files_are_refused(tmp_path):
    (tmp_path / "f").write_text("data")
    with pytest.raises(IndexOutputError, match="a file, not a directory"):
        build(tmp_path / "f")
    build(tmp_path / "idx")
    (tmp_path / "idx" / "notes.md").write_text("mine")
    with pytest.raises(IndexOutputError, match="notes.md"):
        build(tmp_path / "idx")
    assert (tmp_path / "idx" / "notes.md").read_text() == "mine"


def test_index_files_without_a_readable_manifest_are_refused(tmp_path):
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "passages.jsonl").write_text("precious\n")
    with pytest.raises(IndexOutputError, match="has no manifest.json"):
        build(tmp_path / "idx")
    (tmp_path / "idx" / "manifest.json").write_text("{not json")
    with pytest.raises(IndexOutputError, match="unreadable manifest"):
        build(tmp_path / "idx")
    assert (tmp_path / "idx" / "passages.jsonl").read_text() == "precious\n"


def test_empty_directory_is_used(tmp_path):
    (tmp_path / "idx").mkdir()
    build(tmp_path / "idx")
    assert LoadedIndex(tmp_path / "idx").manifest.count == 3


@pytest.mark.parametrize("one_step", [True, False], ids=["exchange", "rename-aside"])
def test_existing_index_is_replaced_and_opens(tmp_path, monkeypatch, one_step):
    if not one_step:
        monkeypatch.setattr(index_output, "exchange", lambda a, b: False)
    build(tmp_path / "idx", 3)
    build(tmp_path / "idx", 5)
    assert LoadedIndex(tmp_path / "idx").manifest.count == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # old index removed


def test_cli_rebuilds_an_index_in_place(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl")
    for _ in range(2):
        result, text = invoke("index", "build", str(corpus), str(tmp_path / "idx"))
        assert result.exit_code == 0, text
    assert LoadedIndex(tmp_path / "idx").manifest.count == 3


# eval results file: one writer at a time


class ScriptedEval:
    """run_eval on the demo questions with a scripted model and no index; each model call
    checks that the results file is locked while the run is on."""

    def __init__(self) -> None:
        self.locked_during_calls: list[bool] = []
        self.out = Path()

    def load_graph(self, name: str, **kwargs):
        return load_graph(name, runtime=scripted_runtime(self.reply))

    def reply(self, messages) -> dict:
        try:
            with results_lock(self.out):
                self.locked_during_calls.append(False)
        except ResultsLockedError:
            self.locked_during_calls.append(True)
        return {"answer": "Caskel", "citations": []}

    def __call__(self, out: Path, limit: int, **kwargs) -> list[dict]:
        self.out = out
        return runner.run_eval("closed_book", "demo", out=out, limit=limit, cache=False,
                               show_progress=False, **kwargs)


@pytest.fixture
def scripted_eval(monkeypatch) -> ScriptedEval:
    scripted = ScriptedEval()
    monkeypatch.setattr(runner, "ensure_index", lambda *args, **kwargs: None)
    monkeypatch.setattr(runner, "load_graph", scripted.load_graph)
    return scripted


HOLD_LOCK = """
import sys
from pathlib import Path
from compose.eval.results_file import results_lock
with results_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "r.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        refused = rf"r.jsonl is being written .*PID {holder.pid}"
        with pytest.raises(ResultsLockedError, match=refused), results_lock(out):
            pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with results_lock(out):  # released when its holder exits
        assert (tmp_path / "r.jsonl.lock").read_text() == f"{os.getpid()}\n"


def test_lock_is_released_when_the_run_fails(tmp_path):
    out = tmp_path / "r.jsonl"
    with pytest.raises(KeyboardInterrupt), results_lock(out):
        raise KeyboardInterrupt
    with results_lock(out):
        pass


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_run_eval_refuses_a_locked_file_on_either_backend(tmp_path, scripted_eval, backend):
    out = tmp_path / "r.jsonl"
    out.write_text('{"id": "dq-01"}\n')
    with results_lock(out), pytest.raises(ResultsLockedError, match=f"PID {os.getpid()}"):
        scripted_eval(out, 2, backend=backend)
    assert out.read_text() == '{"id": "dq-01"}\n'
    assert scripted_eval.locked_during_calls == []


def test_cli_eval_refuses_a_locked_results_file(tmp_path, scripted_eval):
    out = tmp_path / "r.jsonl"
    with results_lock(out):
        result, text = invoke("eval", "closed_book", "--dataset", "demo", "--limit", "1",
                              "--no-cache", "--out", str(out))
    assert result.exit_code == 1
    assert "error:" in text and "being written by another evaluation" in text
    assert f"PID {os.getpid()}" in text
    assert not out.exists() and scripted_eval.locked_during_calls == []


# eval results file: damaged lines


def test_corrupt_middle_line_keeps_the_records_after_it(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    content = (b'{"id": "a"}\n{"id": "b", "pred\n{"id": "c"}\n{"id": "d", "p": "\xff"}\n'
               b'{"id": "e"}\n')
    path.write_bytes(content)
    assert [r["id"] for r in read_done(path)] == ["a", "c", "e"]
    assert path.read_bytes() == content  # damaged lines stay, nothing is cut
    warnings = capsys.readouterr().err
    assert f"{path}:2: damaged line skipped (invalid JSON" in warnings
    assert f"{path}:4: damaged line skipped (invalid UTF-8" in warnings


def test_torn_last_line_inside_a_character_is_cut(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": "q0"}\n{"id": "q1", "prediction": "caf\xc3')
    assert [r["id"] for r in read_done(path)] == ["q0"]
    assert path.read_bytes() == b'{"id": "q0"}\n'
    warning = capsys.readouterr().err
    assert f"{path}:2: torn last line cut (no newline at the end; invalid UTF-8" in warning


def test_other_file_as_results_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# notes\nsome text\nunfinished")
    with pytest.raises(ResultsFileError, match=r"notes.md:1: invalid JSON"):
        read_done(path)
    assert path.read_text() == "# notes\nsome text\nunfinished"


def test_dropping_failed_records_keeps_damaged_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": "a", "error": "boom"}\nnot json\n{"id": "b"}\n')
    drop_records(path, {"a"})
    assert path.read_bytes() == b'not json\n{"id": "b"}\n'


def test_resume_keeps_records_after_a_corrupt_middle_line(tmp_path, scripted_eval):
    out = tmp_path / "r.jsonl"
    first = scripted_eval(out, 3)
    lines = out.read_bytes().split(b"\n")
    out.write_bytes(b"\n".join([lines[0], b'{"id": "dq-02", "predi', *lines[1:]]))
    resumed = scripted_eval(out, 3)
    assert scripted_eval.locked_during_calls == [True] * 3  # none asked again
    assert [r["id"] for r in resumed] == [r["id"] for r in first] == ["dq-01", "dq-02", "dq-03"]
    assert out.read_bytes().count(b"\n") == 4  # every record and the damaged line kept


def test_resume_after_a_line_torn_inside_a_character(tmp_path, scripted_eval):
    out = tmp_path / "r.jsonl"
    scripted_eval(out, 2)
    out.write_bytes(out.read_bytes() + b'{"id": "dq-03", "prediction": "caf\xc3')
    resumed = scripted_eval(out, 3)
    assert [r["id"] for r in resumed] == ["dq-01", "dq-02", "dq-03"]
    assert scripted_eval.locked_during_calls == [True] * 3  # only dq-03 asked again
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b"" and [json.loads(line)["id"] for line in lines[:-1]] == [
        "dq-01", "dq-02", "dq-03"]

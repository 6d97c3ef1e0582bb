"""What a first-time user runs into: mistakes refused before the model loads, every declared
output shown, whole module names, and a Python error that speaks Python."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from compose.api import load_graph
from compose.cli.main import app
from compose.registry import list_modules
from compose.runtime import NotConfiguredError, Runtime
from tests.conftest import retry_spec

runner = CliRunner()


@pytest.fixture
def no_model_load(monkeypatch):
    """Make any runtime creation (the step that starts loading the model) fail the test."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("the runtime was created: the model would start loading")

    monkeypatch.setattr(Runtime, "__init__", refuse)


def test_run_without_a_question_fails_before_loading_the_model(no_model_load):
    result = runner.invoke(app, ["run", "closed_book"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "give the question with -q" in result.output


@pytest.mark.parametrize("damage", ["missing", "not-an-index", "bad-manifest"])
def test_run_with_a_bad_index_fails_before_loading_the_model(no_model_load, tmp_path, damage):
    index = tmp_path / "idx"
    if damage != "missing":
        index.mkdir()
    if damage == "not-an-index":
        (index / "notes.txt").write_text("my notes")
    if damage == "bad-manifest":
        (index / "manifest.json").write_text('{"encoder": ')
    result = runner.invoke(app, ["run", "naive_rag", "-q", "Who?", "--index", str(index)],
                           catch_exceptions=False)
    assert result.exit_code == 1
    assert str(index) in result.output.replace("\n", "")


def test_load_graph_without_an_index_names_the_python_argument():
    with pytest.raises(NotConfiguredError, match=r"pass index=DIR to load_graph") as caught:
        load_graph(retry_spec(budget=1))
    assert "--index" not in str(caught.value)
    assert "retrieve" in str(caught.value)


def test_load_graph_of_a_graph_that_does_not_retrieve_needs_no_index():
    assert load_graph("closed_book").spec.name == "closed_book"


def test_run_prints_every_declared_output(tmp_path):
    """closed_book declares only ``answer``; a copy that also declares ``is_unknown`` must
    show it without --json."""
    from compose.graph.load import load_spec

    spec = load_spec("closed_book")
    extended = spec.model_copy(update={"outputs": [*spec.outputs, "is_unknown"]})
    path = tmp_path / "closed_plus.yaml"
    path.write_text(extended.to_yaml())
    result = runner.invoke(app, ["run", str(path), "-q", "What is the capital of France?"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("answer:") for line in lines)
    assert any(line in ("is_unknown: true", "is_unknown: false") for line in lines), lines


def test_modules_listing_never_cuts_a_name_at_80_columns():
    result = runner.invoke(app, ["modules"], catch_exceptions=False, terminal_width=80)
    assert result.exit_code == 0
    words = set(re.split(r"[\s,:]+", result.output))
    for name, module in list_modules().items():
        described = module.describe()
        fields = {field for part in ("input", "output", "params")
                  for field in described[part].get("properties", {})}
        cut = sorted(word for word in {name} | fields if word not in words)
        assert not cut, f"{name}: cut or missing {cut}"


def test_modules_json_is_unchanged_by_the_table_layout():
    described = json.loads(runner.invoke(app, ["modules", "--json"]).output)
    assert sorted(m["name"] for m in described) == sorted(list_modules())

"""examples/custom_module, installed for real with pip and used by a graph through its entry
points; and a broken plugin installed beside it, named by every lookup and listing.

Each check runs in a fresh interpreter whose only way to the plugin is ``PYTHONPATH`` (the
pip target), from a working directory outside the repository, so nothing is imported from
the example's source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_module"
GRAPH = EXAMPLE / "shout_rag.yaml"
CLI = "from compose.cli.main import app; app()"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed by pip into a target directory. It is built from a copy, since
    setuptools leaves ``build/`` and ``*.egg-info`` in the tree it builds."""
    work = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(EXAMPLE, work / "source")
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True)
    return target


def run_python(code: str, *args: str, path: list[Path],
               cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -c code args...`` with only ``path`` on PYTHONPATH. The CLI prints errors
    through rich, which wraps at the terminal width: a wide one keeps a message on one line
    however long the checkout's path is."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in path),
           "COLUMNS": "1000"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, cwd=cwd, check=False)


RUN_GRAPH = """
import json, sys
from compose import load_graph
from compose.config import RetrieverConfig, RuntimeConfig
from compose.runtime import Runtime
from compose.testing import ScriptedGenerator
from compose.tools.registry import get_tool

runtime = Runtime(RuntimeConfig(retriever=RetrieverConfig(index=sys.argv[2])),
                  generator=ScriptedGenerator([{"answer": "Mira Okafor", "citations": [1]}]))
graph = load_graph(sys.argv[1], runtime=runtime)
state = graph.invoke({"question": "Who invented the kelp-oil lamp?"})
print(json.dumps({"outputs": graph.outputs(state),
                  "nodes": [event["node"] for event in state["trace"]],
                  "module_file": sys.modules["composerag_shout.shout"].__file__,
                  "tool": get_tool("shout_text").fn("quiet")}))
"""


def test_the_installed_plugin_module_runs_in_a_graph_beside_built_ins(site: Path,
                                                                      demo_index: Path,
                                                                      tmp_path: Path):
    done = run_python(RUN_GRAPH, str(GRAPH), str(demo_index), path=[site], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["nodes"] == ["retrieve", "answer", "shout"]
    assert report["outputs"]["answer"] == "Mira Okafor"
    assert report["outputs"]["shouted"] == "MIRA OKAFOR!"
    assert Path(report["module_file"]).is_relative_to(site)
    assert report["tool"] == "QUIET"


def test_without_the_plugin_the_graph_names_the_missing_module(tmp_path: Path):
    done = run_python(CLI, "validate", str(GRAPH), path=[], cwd=tmp_path)
    assert done.returncode != 0
    assert "unknown module 'shout'" in done.stdout + done.stderr


BROKEN_DIST = "composerag_loud-0.1.dist-info"
LOOKUPS = """
import json, warnings
from compose.registry import get_module, list_modules
errors, listed = [], []
for _ in range(2):
    try:
        get_module("loud")
    except KeyError as exc:
        errors.append(exc.args[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        listed.append((sorted(list_modules()), [str(w.message) for w in caught]))
print(json.dumps({"errors": errors, "listed": listed}))
"""


@pytest.fixture
def broken_site(tmp_path: Path) -> Path:
    """A second installed plugin whose module does not import (a dependency is missing)."""
    root = tmp_path / "broken"
    (root / "composerag_loud").mkdir(parents=True)
    (root / "composerag_loud" / "__init__.py").write_text("")
    (root / "composerag_loud" / "loud.py").write_text("import libfoo_not_installed\n")
    info = root / BROKEN_DIST
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: composerag-loud\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[composerag.modules]\nloud = composerag_loud.loud\n")
    return root


def test_a_broken_plugin_beside_it_is_named_on_every_lookup_and_listing(
        site: Path, broken_site: Path, tmp_path: Path):
    done = run_python(LOOKUPS, path=[site, broken_site], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert len(report["errors"]) == 2
    for error in report["errors"]:
        assert "unknown module 'loud'" in error
        assert "'loud' (composerag_loud.loud, group composerag.modules)" in error
        assert "No module named 'libfoo_not_installed'" in error
    for names, warned in report["listed"]:
        assert "shout" in names and "answer" in names  # the working plugin still loads
        assert len(warned) == 1 and "'loud' (composerag_loud.loud" in warned[0]


def test_the_cli_names_the_broken_plugin_when_a_graph_uses_it(site: Path, broken_site: Path,
                                                              tmp_path: Path):
    graph = tmp_path / "loud_rag.yaml"
    graph.write_text(GRAPH.read_text().replace("module: shout", "module: loud"))
    validate = run_python(CLI, "validate", str(graph), path=[site, broken_site], cwd=tmp_path)
    assert validate.returncode != 0
    assert "composerag_loud.loud" in validate.stdout + validate.stderr
    listing = run_python(CLI, "modules", path=[site, broken_site], cwd=tmp_path)
    assert listing.returncode == 0 and "shout:" in listing.stdout
    assert "PluginLoadWarning" in listing.stderr and "composerag_loud.loud" in listing.stderr

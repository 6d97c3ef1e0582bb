"""A fast CLI without timed tests: what a command imports is checked instead of how long it takes.

`--help`, `graphs`, `validate` and `schema` must not import the heavy libraries (LangGraph,
numpy, FAISS, llama.cpp, the encoders...), and `validate` must import only the modules the
graph names. Each check runs in a fresh interpreter, because this test process has long
imported everything. The lazy imports rest on a few restated facts (which file registers
which module, MoI's strategies, the slot-weight store's path), checked here against the
originals.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import typing
from importlib import import_module
from pathlib import Path

import pytest

HEAVY = ("langgraph", "langchain_core", "langsmith", "torch", "numpy", "scipy", "faiss",
         "llama_cpp", "sentence_transformers", "transformers", "onnxruntime", "fastapi",
         "bm25s", "sklearn", "httpx")

REPORT = """
import json, sys
from typer.testing import CliRunner
from compose.cli.main import app
codes = {}
for command in COMMANDS:
    codes[" ".join(command)] = CliRunner().invoke(app, command).exit_code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
files = sorted(m for m in sys.modules if m.startswith("compose.modules."))
ours = sorted(m for m in sys.modules if m.startswith("compose."))
print(json.dumps({"codes": codes, "heavy": heavy, "module_files": files, "compose": ours}))
"""


def fresh_process(commands: list[list[str]]) -> dict:
    """Run CLI commands in-process in a new interpreter; their exit codes and what got
    imported."""
    code = f"HEAVY = {HEAVY!r}\nCOMMANDS = {commands!r}\n{REPORT}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_cli_imports_no_heavy_library():
    assert fresh_process([])["heavy"] == []


@pytest.mark.parametrize("command", [["--help"], ["graphs"], ["schema"],
                                     ["validate", "naive_rag"], ["moi", "--help"],
                                     ["tune", "--help"]])
def test_quick_commands_succeed_without_heavy_libraries(command):
    report = fresh_process([command])
    assert report["codes"] == {" ".join(command): 0}
    assert report["heavy"] == []


def test_help_imports_not_even_pydantic():
    # (running any command does: typer builds pydantic validators for its parameters)
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom compose.cli.main import app\n"
            "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_graphs_prints_each_shipped_graphs_own_description():
    from typer.testing import CliRunner

    from compose.cli.main import app
    from compose.graph.load import load_spec, shipped_graphs

    listed = CliRunner().invoke(app, ["graphs"], terminal_width=10_000).stdout
    for name in shipped_graphs():
        description = " ".join(load_spec(name).description.split())
        assert f"{name}: {description}" in " ".join(listed.split())


def test_graphs_reads_no_module_and_validate_only_the_graphs_own():
    report = fresh_process([["graphs"]])
    assert report["module_files"] == []
    assert not [m for m in report["compose"] if m.startswith(("compose.graph.spec",
                                                              "compose.graph.validate"))]
    # naive_rag is retrieve -> answer; moi_rerank (numpy) or verdict's modules stay unloaded
    assert fresh_process([["validate", "naive_rag"]])["module_files"] == [
        "compose.modules.answer", "compose.modules.retrieve"]


def test_a_typo_still_gets_a_suggestion_from_every_module():
    from compose.registry import get_module

    with pytest.raises(KeyError, match="did you mean answer"):
        get_module("anwser")


def test_the_builtin_table_names_exactly_what_each_file_registers():
    from compose.module import Module
    from compose.modules import BUILTIN
    from compose.registry import list_modules

    registered = {name: cls for name, cls in list_modules().items()
                  if cls.__module__.startswith("compose.modules.")}
    assert {name: cls.__module__.removeprefix("compose.modules.")
            for name, cls in registered.items()} == BUILTIN
    for file in set(BUILTIN.values()):  # no file registers a module the table leaves out
        loaded = vars(import_module(f"compose.modules.{file}")).values()
        own = {v.name for v in loaded if isinstance(v, type) and issubclass(v, Module)
               and v.__module__ == f"compose.modules.{file}" and getattr(v, "name", None)}
        assert own <= set(BUILTIN)


def test_moi_params_offer_exactly_the_proposal_strategies():
    from compose.modules.moi.proposals import Strategy
    from compose.modules.moi.rerank import MoiParams

    assert typing.get_args(MoiParams.model_fields["strategy"].annotation) == typing.get_args(
        Strategy)


def test_moi_store_help_names_the_real_default():
    from compose.cli.moi import StoreOption
    from compose.modules.moi.positions import DEFAULT_STORE

    shown = re.search(r"\(default (.+)\)", typing.get_args(StoreOption)[1].help)
    assert shown and Path(shown.group(1)).expanduser() == DEFAULT_STORE


def test_a_found_index_leaves_its_libraries_to_the_prefetch_thread(demo_index):
    """A fresh process finds the built index without importing FAISS, bm25s or numpy; the
    prefetch thread then loads the index and the real embedded model, and both answer."""
    code = f"""
import json, sys
from compose.config import RetrieverConfig, RuntimeConfig
from compose.corpora.demo import load_demo
from compose.generators.base import Message
from compose.retrieval.store import ensure_index
from compose.runtime import Runtime
def heavy():
    return sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
path = ensure_index(load_demo().corpus, "demo", root={str(demo_index.parent)!r})
found_with = heavy()
runtime = Runtime(RuntimeConfig(retriever=RetrieverConfig(index=str(path))))
runtime.prefetch(generator=True, retriever=True).join()
loaded = sorted(k for k in ("generator", "retriever") if k in runtime.__dict__)
hits = runtime.retriever.search("Who designed the Velmora Bridge?", k=1)
reply = runtime.generator.generate([Message(role="user", content="Say hello.")], max_tokens=8)
print(json.dumps({{"path": str(path), "found_with": found_with, "loaded": loaded,
                   "prefetched": heavy(), "hit": hits[0].id, "text": reply.text}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["path"] == str(demo_index) and report["found_with"] == []
    assert report["loaded"] == ["generator", "retriever"]
    assert {"faiss", "bm25s", "llama_cpp"} <= set(report["prefetched"])
    assert report["hit"] == "demo-025" and report["text"].strip()

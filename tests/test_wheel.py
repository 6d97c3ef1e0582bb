"""The built wheel carries the graphs and demo corpus: install it into a fresh venv and run a
shipped graph by name from outside the source tree. And the wheel's core dependencies (no
extras) are enough to build an index and run a graph: a second venv holds only them."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from importlib.metadata import Distribution, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(ROOT)], check=True)
    return next(dist.glob("composerag-*.whl"))


def fresh_venv(path: Path) -> Path:
    """A venv with nothing but pip; returns its site-packages directory."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return Path(subprocess.run(
        [str(path / "bin" / "python"), "-c", "import sysconfig;print(sysconfig.get_paths()"
         "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())


def install_wheel(venv: Path, wheel: Path) -> None:
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    str(wheel)], check=True)


@pytest.fixture(scope="module")
def wheel_venv(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("wheel") / "venv"
    purelib = fresh_venv(venv)
    # Dependencies come from this environment (a .pth file); composerag itself only from
    # the wheel, so missing package data would show up here.
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]]
            if "site-packages" in p]
    (purelib / "outer_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    install_wheel(venv, wheel)
    return venv


def core_requirements(wheel: Path) -> list[Requirement]:
    """The wheel's Requires-Dist entries that no extra guards: what `pip install .` installs."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    requirements = [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


def installed_closure(requirements: list[Requirement]) -> dict[str, Distribution]:
    """The installed distributions ``requirements`` pull in, transitively, as pip resolves
    them: environment markers evaluated, requested extras followed."""
    found: dict[str, Distribution] = {}
    seen: set[tuple[str, str]] = set()
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        for extra in {"", *requirement.extras}:
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            found[name] = distribution(name)
            for line in found[name].requires or []:
                needed = Requirement(line)
                guarded_by_extra = needed.marker is not None and "extra" in str(needed.marker)
                if extra and not guarded_by_extra:
                    continue  # already followed for the base requirement
                if needed.marker is None or needed.marker.evaluate({"extra": extra}):
                    pending.append(needed)
    return found


def top_level_names(dists: dict[str, Distribution]) -> set[str]:
    """The importable top-level names the files of ``dists`` provide."""
    names = set()
    for dist in dists.values():
        for file in dist.files or []:
            top = file.parts[0]
            if top == ".." or top.endswith((".dist-info", ".libs", ".pth")) or top in (
                    "__pycache__", "bin"):
                continue
            names.add(top.split(".", 1)[0])
    return names


# Imported first in the core venv (through a .pth file), it takes the place of the path
# finder: a top-level package that would come from this environment's site-packages but
# from no core distribution is not found, just as if it were not installed (so probes like
# ``importlib.util.find_spec("accelerate")`` answer None too), and neither is its metadata.
# The standard library and the venv's own files are found as usual.
CORE_GUARD = """
import sys
from importlib.machinery import PathFinder

ALLOWED = {allowed!r}
DISTRIBUTIONS = {distributions!r}
SHARED = {shared!r}


class CoreOnly:
    invalidate_caches = PathFinder.invalidate_caches

    @classmethod
    def find_distributions(cls, *args, **kwargs):
        for dist in PathFinder.find_distributions(*args, **kwargs):
            name = dist.metadata["Name"] or ""
            if (name.lower().replace("_", "-").replace(".", "-") in DISTRIBUTIONS
                    or not str(dist.locate_file("")).startswith(SHARED)):
                yield dist

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        spec = PathFinder.find_spec(name, path, target)
        if spec is None or path is not None or name.partition(".")[0] in ALLOWED:
            return spec
        where = spec.origin or next(iter(spec.submodule_search_locations or []), "")
        return None if where.startswith(SHARED) else spec


sys.meta_path[:] = [CoreOnly if finder is PathFinder else finder for finder in sys.meta_path]
"""


@pytest.fixture(scope="module")
def core_venv(wheel, tmp_path_factory) -> Path:
    """A venv that sees this environment's packages, but may import only composerag and the
    distributions its core requirements pull in: a core install, without copying 2 GB. (A
    symlinked copy would not do: llama.cpp's CPU backend is found by its real path.)"""
    venv = tmp_path_factory.mktemp("core") / "venv"
    purelib = fresh_venv(venv)
    core = installed_closure(core_requirements(wheel))
    allowed = top_level_names(core) | {"compose"}
    deps = list(dict.fromkeys(p for p in site.getsitepackages() + [
        sysconfig.get_paths()["purelib"]] if "site-packages" in p))
    (purelib / "outer_deps.pth").write_text("\n".join(deps) + "\n")
    (purelib / "_core_guard.py").write_text(
        CORE_GUARD.format(allowed=sorted(allowed), distributions=sorted(core),
                          shared=tuple(deps)))
    (purelib / "_core_guard.pth").write_text("import _core_guard\n")
    install_wheel(venv, wheel)
    return venv


def run_cli(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "composerag"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_wheel_install_runs_shipped_graph_by_name(wheel_venv, tmp_path, demo_index):
    located = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c", "import compose; print(compose.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in located and "venv" in located
    graphs = run_cli(wheel_venv, tmp_path, "graphs")
    assert "naive_rag" in graphs.stdout and "closed_book" in graphs.stdout
    result = run_cli(wheel_venv, tmp_path, "run", "naive_rag", "-q",
                     "Who invented the kelp-oil lamp?", "--index", str(demo_index))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "answer:" in result.stdout and "Kelp-oil lamp" in result.stdout


def test_wheel_ships_demo_corpus(wheel_venv, tmp_path):
    code = ("from compose.corpora.demo import load_demo; d = load_demo(); "
            "print(len(d.corpus), len(d.questions))")
    out = subprocess.run([str(wheel_venv / "bin" / "python"), "-c", code], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) >= 100 and int(out[1]) >= 10


def test_core_dependencies_build_an_index_and_run_a_graph(core_venv, tmp_path):
    """No extra installed, and a fresh ONNX cache, so the encoder's first export (torch)
    runs here too: every module the index build and `composerag run` import must come from
    the core dependencies, or the commands fail with an ImportError."""
    python = str(core_venv / "bin" / "python")
    for extra_only in ("ray", "fastapi", "mcp", "peft", "pytest"):
        probe = subprocess.run([python, "-c", f"import {extra_only}"], capture_output=True,
                               text=True)
        assert "ModuleNotFoundError" in probe.stderr, f"{extra_only} importable in core"
    env = {**os.environ, "COMPOSERAG_ONNX_CACHE": str(tmp_path / "onnx")}
    corpus = ROOT / "corpora" / "demo" / "passages.jsonl"

    def composerag(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(core_venv / "bin" / "composerag"), *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)

    built = composerag("index", "build", str(corpus), str(tmp_path / "idx"))
    assert built.returncode == 0, built.stderr[-3000:]
    assert "to ONNX once" in built.stderr  # the export ran, with torch, in the core venv
    result = composerag("run", "naive_rag", "-q", "Who invented the kelp-oil lamp?",
                        "--index", str(tmp_path / "idx"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "answer:" in result.stdout and "Kelp-oil lamp" in result.stdout

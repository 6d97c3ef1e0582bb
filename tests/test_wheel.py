"""The built wheel carries the graphs and demo corpus: install it into a fresh venv and run a
shipped graph by name from outside the source tree."""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(work / "dist"), str(ROOT)], check=True)
    wheel = next((work / "dist").glob("composerag-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Dependencies come from this environment (a .pth file); composerag itself only from
    # the wheel, so missing package data would show up here.
    purelib = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig;print(sysconfig.get_paths()"
         "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]]
            if "site-packages" in p]
    (purelib / "outer_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    str(wheel)], check=True)
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

"""``eval --backend ray`` on a real local Ray instance writes the same results as a local run,
and the two backends can finish each other's runs."""

from __future__ import annotations

import json

import pytest

from compose.eval.runner import run_eval

TIMINGS = {"wall_s", "generator_s", "retriever_s", "node_latency_s"}


def results(path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS}
            for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    yield
    ray.shutdown()


def test_ray_workers_write_the_same_file_as_a_local_run(tmp_path, demo_index, ray_instance):
    # One llama.cpp thread everywhere: a Ray worker's share here. llama.cpp's BF16 and
    # flash-attention kernels round differently with another thread count, which can flip a
    # near-tie greedy token; the backends must agree, not the thread counts.
    common = {"limit": 4, "cache": False, "index_root": demo_index.parent,
              "show_progress": False, "overrides": ["generator.n_threads=1"]}
    run_eval("naive_rag", "demo", out=tmp_path / "local.jsonl", **common)
    run_eval("naive_rag", "demo", out=tmp_path / "ray.jsonl", backend="ray", workers=2,
             **common)
    local = results(tmp_path / "local.jsonl")
    assert len(local) == 4 and all(r["error"] is None and r["llm_calls"] == 1 for r in local)
    assert results(tmp_path / "ray.jsonl") == local

    # A run begun locally and finished on Ray is the same file too.
    run_eval("naive_rag", "demo", out=tmp_path / "mixed.jsonl", **{**common, "limit": 1})
    run_eval("naive_rag", "demo", out=tmp_path / "mixed.jsonl", backend="ray", workers=2,
             **common)
    assert results(tmp_path / "mixed.jsonl") == local


def test_unknown_backend_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown eval backend"):
        run_eval("naive_rag", "demo", out=tmp_path / "x.jsonl", backend="spark")

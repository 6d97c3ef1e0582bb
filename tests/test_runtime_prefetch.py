"""Runtime.prefetch: resources load once on a background thread, and a node that asks
meanwhile waits for that load instead of starting a second one."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import compose.runtime as runtime_module
from compose.config import RetrieverConfig, RuntimeConfig
from compose.runtime import NotConfiguredError, Runtime


def test_prefetch_and_a_concurrent_caller_share_one_load(monkeypatch):
    created = []

    def slow_generator(config):
        time.sleep(0.3)
        created.append(object())
        return created[-1]

    monkeypatch.setattr(runtime_module, "get_generator", slow_generator)
    runtime = Runtime(RuntimeConfig())
    thread = runtime.prefetch(generator=True, retriever=False)
    time.sleep(0.05)  # the thread holds the load by now
    assert runtime.generator is created[0]
    thread.join()
    assert len(created) == 1 and runtime.generator is created[0]


def test_a_failed_prefetch_is_raised_by_the_caller_that_needs_it():
    runtime = Runtime(RuntimeConfig(retriever=RetrieverConfig(index=None)))
    runtime.prefetch(generator=False, retriever=True).join()
    with pytest.raises(NotConfiguredError, match="no index is configured"):
        _ = runtime.retriever


def test_prefetch_loads_the_real_index(demo_index):
    runtime = Runtime(RuntimeConfig(retriever=RetrieverConfig(index=str(demo_index))))
    runtime.prefetch(generator=False, retriever=True).join()
    assert "retriever" in runtime.__dict__
    assert runtime.retriever.search("Velmora Bridge", k=1)


def test_importing_the_cli_leaves_langgraph_for_later():
    probe = "import sys, compose.cli; print('langgraph' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"

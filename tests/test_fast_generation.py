"""Fast local generation on the real embedded model: the CPU variant llama.cpp runs, the derived
fast-format copy of the shipped GGUF and its manifest, and MoI's parallel-sequence exploration
against the same computation run one sequence at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compose.config import GeneratorConfig
from compose.corpus import Passage
from compose.generators.adapters import resolve_adapter
from compose.generators.cpu_backend import ensure_cpu_backend, library_dir, variant_files
from compose.generators.factory import get_generator
from compose.generators.fast_gguf import (
    DerivedManifest,
    auto_format,
    derived_gguf,
    read_manifest,
    sha256_file,
    slow_type_hint,
)
from compose.generators.models import resolve_gguf
from compose.modules.moi.proposals import propose
from compose.modules.moi.rerank import MoiRerank

FILE_TYPES = {"bf16": 32, "q8_0": 7}  # general.file_type (llama_ftype)


@pytest.fixture(scope="module")
def shipped():
    return resolve_gguf("smollm2-135m")


@pytest.fixture(scope="module")
def llama():
    return get_generator(GeneratorConfig())


def test_a_cpu_variant_this_machine_runs_is_registered():
    backend = ensure_cpu_backend()
    files = variant_files(library_dir())
    assert len(files) >= 5, "setup builds llama.cpp with all CPU variants"
    assert backend.variant in files and backend.score > 0
    without_amx = {name: score for name, score in backend.candidates.items()
                   if name != "sapphirerapids"}
    assert backend.score == max(without_amx.values())
    assert backend.candidates.get("x64", 1) > 0  # the baseline variant runs anywhere


def test_an_amx_variant_is_never_chosen_unasked():
    # On a Xeon VM whose kernel granted AMX, the sapphirerapids variant (the top CPUID score)
    # died with SIGILL on the first quantized matmul: AMX is opt-in (COMPOSERAG_LLAMA_CPU).
    assert ensure_cpu_backend().variant != "sapphirerapids"


def test_an_unknown_cpu_variant_is_refused_by_name():
    done = subprocess.run(
        [sys.executable, "-c", "from compose.generators.cpu_backend import ensure_cpu_backend;"
         "ensure_cpu_backend()"], env={**os.environ, "COMPOSERAG_LLAMA_CPU": "pentium2"},
        capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "COMPOSERAG_LLAMA_CPU=pentium2: no such CPU variant" in done.stderr


def test_the_default_generator_runs_the_derived_copy_with_the_adapter_merged(llama, shipped):
    target = auto_format(ensure_cpu_backend().variant)
    adapter = resolve_adapter("tuned", shipped)
    assert adapter is not None
    assert llama.model_id == (f"gguf:SmolLM2-135M-Instruct.Q4_1.{target}.lora-{adapter.digest}"
                              ".gguf")
    assert not llama.llama._lora_adapter  # merged: nothing left to apply per token
    assert int(llama.llama.metadata["general.file_type"]) == FILE_TYPES[target]
    manifest = read_manifest(Path(llama.llama.model_path).with_suffix(".json"))
    assert manifest is not None
    assert manifest.source_sha256 == sha256_file(shipped)
    assert manifest.target_type == target and manifest.adapter_sha256 == adapter.sha256


def test_a_merged_copy_naming_another_adapter_is_rebuilt(tmp_path, shipped):
    adapter = resolve_adapter("tuned", shipped)
    path = derived_gguf(shipped, "q8_0", cache_dir=tmp_path, adapter=adapter)
    assert path.name.endswith(f".q8_0.lora-{adapter.digest}.gguf")
    manifest_path = path.with_suffix(".json")
    manifest = DerivedManifest.model_validate_json(manifest_path.read_text())
    manifest_path.write_text(manifest.model_copy(update={"adapter_sha256": "0" * 64})
                             .model_dump_json())
    built = path.stat().st_mtime_ns
    assert derived_gguf(shipped, "q8_0", cache_dir=tmp_path, adapter=adapter) == path
    assert path.stat().st_mtime_ns != built
    rebuilt = read_manifest(manifest_path)
    assert rebuilt is not None and rebuilt.adapter_sha256 == adapter.sha256
    plain = derived_gguf(shipped, "q8_0", cache_dir=tmp_path)  # no adapter: its own file
    assert plain != path and read_manifest(plain.with_suffix(".json")).adapter_sha256 is None


def test_derivation_writes_a_manifest_and_reuses_a_current_copy(tmp_path, shipped):
    path = derived_gguf(shipped, "q8_0", cache_dir=tmp_path)
    manifest = read_manifest(path.with_suffix(".json"))
    assert manifest is not None and manifest.source == str(shipped)
    assert manifest.derived_size == path.stat().st_size
    built = path.stat().st_mtime_ns
    assert derived_gguf(shipped, "q8_0", cache_dir=tmp_path) == path
    assert path.stat().st_mtime_ns == built  # current: not rebuilt


@pytest.mark.parametrize("damage", ["truncated", "other_type", "other_source", "no_manifest"])
def test_a_stale_or_mismatched_copy_is_rebuilt_not_used(tmp_path, shipped, damage):
    path = derived_gguf(shipped, "q8_0", cache_dir=tmp_path)
    manifest_path = path.with_suffix(".json")
    manifest = DerivedManifest.model_validate_json(manifest_path.read_text())
    if damage == "truncated":
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size // 2)
    elif damage == "other_type":
        manifest_path.write_text(manifest.model_copy(update={"target_type": "q4_0"})
                                 .model_dump_json())
    elif damage == "other_source":  # the shipped file changed since: size/mtime and hash differ
        manifest_path.write_text(manifest.model_copy(update={
            "source_sha256": "0" * 64, "source_mtime_ns": 1}).model_dump_json())
    else:
        manifest_path.unlink()
    derived_gguf(shipped, "q8_0", cache_dir=tmp_path)
    rebuilt = read_manifest(manifest_path)
    assert rebuilt is not None and rebuilt.source_sha256 == sha256_file(shipped)
    assert rebuilt.target_type == "q8_0" and rebuilt.derived_size == path.stat().st_size
    assert path.stat().st_size > 100_000_000


def test_none_runs_the_shipped_file_and_user_files_get_a_hint_when_slow(shipped):
    assert derived_gguf(shipped, "none") == shipped
    assert "no fast llama.cpp CPU path" in slow_type_hint(3, shipped)  # Q4_1
    assert slow_type_hint(7, shipped) is None  # Q8_0


def moi_prompts(question: str, passages: list[Passage]):
    moi = MoiRerank()
    return [moi.render(question, passages, order)
            for order in propose("cyclic", len(passages), None, None)]


PASSAGES = [
    Passage(id="a", title="Velmora Bridge", text="The Velmora Bridge was designed by the "
            "engineer Ilse Ranneth and completed in 1872."),
    Passage(id="b", title="Ilse Ranneth", text="Ilse Ranneth was an engineer born in Caskel."),
    Passage(id="c", title="Caskel", text="Caskel is a port town on Great Kestra."),
    Passage(id="d", title="Aubeth River", text="The Aubeth River flows through Velmora."),
    Passage(id="e", title="Tarrow", text="Tarrow is a market town with a weekly fair."),
]


@pytest.mark.parametrize("sequences", [8, 2])  # all five prompts in one batch; in groups
def test_parallel_exploration_equals_the_sequential_run(sequences):
    llama = get_generator(GeneratorConfig(parallel_sequences=sequences))
    prompts = moi_prompts("Who designed the Velmora Bridge?", PASSAGES)
    parallel = llama.short_answers(prompts)
    sequential = llama.short_answers(prompts, parallel=False)
    assert [r.answer for r in parallel] == [r.answer for r in sequential]
    assert any("Ranneth" in r.answer for r in parallel)
    for a, b in zip(parallel, sequential, strict=True):
        assert a.tokens_out == b.tokens_out and a.complete == b.complete
        # Batched and single-row matmul kernels round differently, so log-probabilities
        # agree closely but not bit for bit; the greedy answers are identical.
        assert sum(a.token_logprobs) / a.tokens_out == pytest.approx(
            sum(b.token_logprobs) / b.tokens_out, abs=0.1)
    assert parallel[1].cached_tokens > 0  # the shared prefix was evaluated once


def test_the_moi_module_explores_with_logprobs_without_logits_all(llama):
    from compose.runtime import Runtime

    runtime = Runtime(generator=llama)
    out = MoiRerank()({"question": "Who designed the Velmora Bridge?",
                       "passages": [p.model_dump() for p in PASSAGES]}, runtime.context())
    assert not llama.logprobs_enabled
    assert len(out.trials) == 5 and all(t.mean_logprob is not None for t in out.trials)
    assert json.loads(json.dumps([u.model_dump() for u in out.utilities]))

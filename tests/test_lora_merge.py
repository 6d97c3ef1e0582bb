"""Folding a LoRA adapter into F32 weights, on small GGUF files written with llama.cpp's own
GGUF library: the sum is llama.cpp's (alpha / rank, B's inner dimension as the rank), and an
adapter that does not fit is refused rather than half applied. The real model's merged copy
is tested in test_tune_export and test_fast_generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter

from compose.generators.adapters import AdapterError
from compose.generators.lora_merge import LoraMergeError, merge_lora

RNG = np.random.default_rng(0)
WEIGHT = RNG.normal(size=(6, 4)).astype(np.float32)  # numpy (n_out, n_in), as GGUFReader gives
NORM = RNG.normal(size=(4,)).astype(np.float32)
A = RNG.normal(size=(2, 4)).astype(np.float32)  # (rank, n_in)
B = RNG.normal(size=(6, 2)).astype(np.float32)  # (n_out, rank)


def write_gguf(path: Path, tensors: dict[str, np.ndarray], alpha: float | None = None,
               general_type: str = "model") -> Path:
    writer = GGUFWriter(path, arch="llama")
    writer.add_type(general_type)
    writer.add_block_count(1)
    if alpha is not None:
        writer.add_float32("adapter.lora.alpha", alpha)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def base(tmp_path) -> Path:
    return write_gguf(tmp_path / "base.gguf", {"blk.0.attn_q.weight": WEIGHT,
                                                "blk.0.attn_norm.weight": NORM})


def tensors(path: Path) -> dict[str, np.ndarray]:
    return {t.name: np.asarray(t.data) for t in GGUFReader(path).tensors}


@pytest.mark.parametrize(("alpha", "scale"), [(8.0, 4.0), (None, 1.0)])
def test_the_update_is_llama_cpps_sum(tmp_path, base, alpha, scale):
    adapter = write_gguf(tmp_path / "lora.gguf", {"blk.0.attn_q.weight.lora_a": A,
                                                  "blk.0.attn_q.weight.lora_b": B},
                         alpha=alpha, general_type="adapter")
    assert merge_lora(base, adapter, tmp_path / "merged.gguf") == 1
    merged = tensors(tmp_path / "merged.gguf")
    np.testing.assert_allclose(merged["blk.0.attn_q.weight"], WEIGHT + scale * (B @ A),
                               rtol=1e-6)
    np.testing.assert_array_equal(merged["blk.0.attn_norm.weight"], NORM)  # not adapted
    fields = GGUFReader(tmp_path / "merged.gguf").fields
    assert fields["general.type"].contents() == "model"  # the base's metadata, copied
    assert fields["llama.block_count"].contents() == 1


@pytest.mark.parametrize(("adapter_tensors", "message"), [
    ({"blk.0.attn_q.weight.lora_a": A, "blk.0.attn_q.weight.lora_b": B[:5]}, "has shape"),
    ({"blk.9.attn_q.weight.lora_a": A, "blk.9.attn_q.weight.lora_b": B}, "does not have"),
    ({"blk.0.attn_q.weight.lora_a": A}, "has only lora_a"),
    ({"blk.0.attn_q.weight": WEIGHT}, "not a LoRA half"),
])
def test_an_adapter_that_does_not_fit_is_refused(tmp_path, base, adapter_tensors, message):
    adapter = write_gguf(tmp_path / "lora.gguf", adapter_tensors, alpha=4.0)
    with pytest.raises(LoraMergeError, match=message) as raised:
        merge_lora(base, adapter, tmp_path / "merged.gguf")
    assert isinstance(raised.value, AdapterError)  # callers catch adapter errors as one kind
    assert not (tmp_path / "merged.gguf").exists()


def test_a_quantized_base_is_refused(tmp_path):
    base = write_gguf(tmp_path / "f16.gguf", {"blk.0.attn_q.weight": WEIGHT.astype(np.float16)})
    adapter = write_gguf(tmp_path / "lora.gguf", {"blk.0.attn_q.weight.lora_a": A,
                                                  "blk.0.attn_q.weight.lora_b": B}, alpha=4.0)
    with pytest.raises(LoraMergeError, match="is F16, not F32"):
        merge_lora(base, adapter, tmp_path / "merged.gguf")

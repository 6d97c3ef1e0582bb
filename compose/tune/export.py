"""A trained peft LoRA adapter -> llama.cpp's adapter GGUF, with a manifest beside it.

The conversion is llama.cpp's own ``convert_lora_to_gguf.py`` from the llama.cpp that the
installed library was built from (``llama_sources``), run in a subprocess. It maps the HF
tensor names to llama.cpp's, and carries the base architecture's weight transformations
over to the LoRA factors (Llama's q/k row permutation acts on B): a hand-written GGUF would
have to track both, version by version. It reads only the base's ``config.json``; the base
given is the HF form of the base GGUF (``dequantized_checkpoint``), the checkpoint the
adapter is trained on. The converter ignores the peft settings that llama.cpp's adapter format
cannot express (rsLoRA, DoRA, per-module ranks or alphas), so those are refused here.

The factors are written as F32 (``OUTTYPE``). Measured on SmolLM2-135M with a random rank-4
adapter on all seven projections: on an F32 copy of the base (F32 KV cache, no flash
attention) llama.cpp changes the last-token logits as peft does to 1e-4 relative with F32
factors (6e-4 with F16), so the conversion - q/k permutation, scale alpha/r - is exact. On the
BF16 copy that the fast path runs, every matmul rounds its activations to BF16, which blurs
the change whatever the factors' type (by 30% and more for a change of logit norm ~40, 12%
for one of norm 140); F32 factors add no rounding of their own. They take 19.6 MB at rank 16
(F16: 9.8 MB) and under 4% more multiply-adds per token than the base.

The sidecar ``<out_file>.json`` (``AdapterManifest``) records the base's signature read from
its GGUF, the LoRA rank, alpha and target modules, the adapter's sha256 and the training
recipe; loading checks it (``compose.generators.adapters``).

Usage::

    export_adapter(Path("runs/lora"), Path("smollm2-135m-tuned.gguf"), recipe={"lr": 2e-4})
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from compose.generators.adapters import AdapterManifest, gguf_signature, manifest_path
from compose.generators.fast_gguf import sha256_file
from compose.generators.models import DEFAULT_MODEL, resolve_gguf
from compose.generators.transformers_backend import dequantized_checkpoint
from compose.tune.llama_sources import CONVERTER, llama_cpp_sources

OUTTYPE = "f32"
# peft settings the converter ignores, which would silently give another model in llama.cpp.
_UNSUPPORTED = ("use_rslora", "use_dora", "rank_pattern", "alpha_pattern")


class ExportError(RuntimeError):
    """llama.cpp's converter refused the adapter."""


def export_adapter(peft_dir: Path, out_file: Path, *, base_model: str = DEFAULT_MODEL,
                   recipe: dict[str, Any] | None = None) -> Path:
    """Convert the peft adapter in ``peft_dir`` for ``base_model`` (a registry name or a base
    GGUF path) into ``out_file``, and write ``<out_file>.json``."""
    config_file = peft_dir / "adapter_config.json"
    if not config_file.is_file():
        raise ExportError(f"{peft_dir} is not a peft adapter directory (no adapter_config.json)")
    lora = json.loads(config_file.read_text())
    unsupported = [key for key in _UNSUPPORTED if lora.get(key)]
    if unsupported:
        raise ExportError(f"{peft_dir} uses {', '.join(unsupported)}, which llama.cpp's adapter "
                          "format cannot express (it scales every tensor by lora_alpha / r); "
                          "train without it")
    base_gguf = resolve_gguf(base_model)
    convert_lora(peft_dir, dequantized_checkpoint(base_gguf), out_file)
    targets = lora["target_modules"]
    manifest = AdapterManifest(
        base_model=base_model, base=gguf_signature(base_gguf), lora_rank=lora["r"],
        lora_alpha=lora["lora_alpha"],
        target_modules=sorted([targets] if isinstance(targets, str) else targets),
        outtype=OUTTYPE, adapter_sha256=sha256_file(out_file),
        converter=f"{CONVERTER} of llama-cpp-python {version('llama-cpp-python')}",
        recipe=recipe or {})
    sidecar = manifest_path(out_file)
    partial_sidecar = sidecar.with_name(sidecar.name + ".part")
    partial_sidecar.write_text(manifest.model_dump_json(indent=2))
    os.replace(partial_sidecar, sidecar)
    return out_file


def convert_lora(peft_dir: Path, hf_base: Path, out_file: Path) -> None:
    """Run llama.cpp's converter on ``peft_dir`` against the HF base ``hf_base`` (only its
    ``config.json`` is read); ``out_file`` appears only when the conversion succeeded."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(out_file.name + ".part")
    command = [sys.executable, str(llama_cpp_sources() / CONVERTER), "--base", str(hf_base),
               "--outtype", OUTTYPE, "--outfile", str(partial), str(peft_dir)]
    # The converter's own gguf-py (not a PyPI gguf of another version), and no hub look-ups.
    env = {key: value for key, value in os.environ.items() if key != "NO_LOCAL_GGUF"}
    env["HF_HUB_OFFLINE"] = "1"
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0 or not partial.is_file():
            raise ExportError(
                f"llama.cpp's {CONVERTER} could not convert {peft_dir} for the base "
                f"{hf_base} (exit {done.returncode}):\n{done.stderr.strip()[-2000:]}")
        os.replace(partial, out_file)
    finally:
        partial.unlink(missing_ok=True)

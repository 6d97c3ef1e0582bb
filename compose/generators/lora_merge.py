"""A LoRA adapter folded into its base model's weights, so llama.cpp runs no adapter at all.

Applied at run time, an adapter adds two small matmuls beside every adapted weight matrix
(210 of them for the shipped SmolLM2 adapter); on the BF16 copy of the embedded model that
cost about 16% of prefill and 10% of decode speed here (5 fresh processes per setting taken
in turn; the README's "Generation speed and formats"). Folding ``W + (alpha / rank) * B @ A``
into the weights once removes that. llama.cpp's ``llama-export-lora`` tool does the same sum,
but the Python package does not build its tools, so the sum is taken with llama.cpp's own
GGUF library (``gguf``) on an F32 copy that llama.cpp's quantizer writes; ``fast_gguf`` then
quantizes the result to the fast type. The tensors are summed in GGUF's own layout, exactly
as llama.cpp applies an adapter, so the Q/K row permutation of the llama converter needs no
special case.

Usage::

    from compose.generators.lora_merge import merge_lora
    changed = merge_lora(Path("base.f32.gguf"), Path("adapter.gguf"), Path("merged.f32.gguf"))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from compose.generators.adapters import AdapterError

if TYPE_CHECKING:
    import numpy as np
    from gguf import GGUFReader

ALPHA_KEY = "adapter.lora.alpha"


class LoraMergeError(AdapterError):
    """The adapter does not fit the base it is merged into, or the base is not F32."""


def merge_lora(base_f32: Path, adapter: Path, out: Path) -> int:
    """Write ``base_f32`` with ``adapter`` folded in to ``out``; returns how many weight
    matrices changed. Every tensor of the base must be F32 (``llama_model_quantize`` with
    ``LLAMA_FTYPE_ALL_F32`` writes such a copy of any GGUF)."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, Keys

    base = GGUFReader(base_f32)
    deltas = _adapter_deltas(GGUFReader(adapter))
    changed = len(deltas)
    architecture = str(base.fields[Keys.General.ARCHITECTURE].contents())
    writer = GGUFWriter(out, arch=architecture)
    for field in base.fields.values():
        if field.name == Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    for tensor in base.tensors:
        if tensor.tensor_type != GGMLQuantizationType.F32:
            raise LoraMergeError(f"{base_f32.name}: tensor {tensor.name} is "
                                 f"{tensor.tensor_type.name}, not F32")
        weights = np.asarray(tensor.data, dtype=np.float32)
        delta = deltas.pop(tensor.name, None)
        if delta is not None:
            if delta.shape != weights.shape:
                raise LoraMergeError(f"its update of {tensor.name} has shape {delta.shape}, "
                                     f"the base's tensor {weights.shape}")
            weights = weights + delta
        writer.add_tensor(tensor.name, weights)
    if deltas:
        raise LoraMergeError("it adapts tensors the base does not have: "
                             f"{', '.join(sorted(deltas)[:5])}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return changed


def _adapter_deltas(reader: GGUFReader) -> dict[str, np.ndarray]:
    """``scale * B @ A`` per adapted tensor, with llama.cpp's scale: alpha / rank (the rank
    being B's inner dimension), or 1 when the adapter states no alpha."""
    import numpy as np

    halves: dict[str, dict[str, np.ndarray]] = {}
    for tensor in reader.tensors:
        name, _, half = tensor.name.rpartition(".")
        if half not in ("lora_a", "lora_b"):
            raise LoraMergeError(f"its tensor {tensor.name} is not a LoRA half "
                                 "(.lora_a / .lora_b)")
        halves.setdefault(name, {})[half] = np.asarray(tensor.data, dtype=np.float32)
    field = reader.fields.get(ALPHA_KEY)
    alpha = float(field.contents()) if field is not None else 0.0
    deltas = {}
    for name, pair in halves.items():
        if set(pair) != {"lora_a", "lora_b"}:
            raise LoraMergeError(f"its {name} has only {', '.join(pair)}")
        a, b = pair["lora_a"], pair["lora_b"]  # numpy shapes (rank, n_in), (n_out, rank)
        scale = alpha / b.shape[1] if alpha else 1.0
        deltas[name] = scale * (b @ a)
    return deltas


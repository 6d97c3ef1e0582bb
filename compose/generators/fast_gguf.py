"""The embedded model in a weight format that llama.cpp runs fast on this CPU.

The shipped SmolLM2 file is Q4_1, a type with no fast matmul path in llama.cpp on x86 (neither
the llamafile kernels nor the repacked CPU buffers cover it), so every prefill falls back to a
generic per-row dot product. On first use the shipped file is converted once with llama.cpp's
own quantizer (``llama_model_quantize``) into a type that has one, and cached beside a
manifest: the source file's sha256, size and mtime, the target type, the llama-cpp-python
version and the derived file's size. The default (``auto``) is BF16 on CPUs with BF16 dot
products and Q8_0 elsewhere: both hold Q4_1's values to within a fraction of a percent, so
answers stay as they were, while Q4_0 and IQ4_NL re-round them to 4 bits and lose answers
(the README's paired comparison).
A derived file whose manifest disagrees with any of these is rebuilt, never used.

With a LoRA adapter the copy is made with the adapter merged into its weights
(``lora_merge`` says why), named and manifested by
the adapter's sha256 as well.

Usage::

    from compose.generators.fast_gguf import derived_gguf
    source = Path("SmolLM2-135M-Instruct.Q4_1.gguf")
    path = derived_gguf(source, "q8_0")
    tuned = derived_gguf(source, "bf16", adapter=resolve_adapter("tuned", source))
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ValidationError

from compose.config import DEFAULT_HOME

FastFormat = Literal["auto", "bf16", "q8_0", "f16", "q4_0", "iq4_nl", "none"]
# llama_ftype values (llama.h) of the targets offered.
_FTYPES = {"q8_0": 7, "bf16": 32, "f16": 1, "q4_0": 2, "iq4_nl": 25}
_F32 = 0  # LLAMA_FTYPE_ALL_F32: the copy an adapter is merged into
# general.file_type values whose matmuls have a fast x86 path in the vendored llama.cpp:
# F32, F16, Q4_0, Q8_0, Q4_K_S/M, IQ4_NL, BF16 (tinyBLAS or the repacked CPU buffers).
FAST_FILE_TYPES = frozenset({0, 1, 2, 7, 14, 15, 25, 32})
MANIFEST_VERSION = 3  # raised whenever the conversion recipe changes: older copies are rebuilt
# CPU variants with AVX512-BF16, where llama.cpp's BF16 matmuls run on the dot-product unit.
_BF16_VARIANTS = frozenset({"zen4", "cooperlake", "sapphirerapids"})


class DerivedManifest(BaseModel):
    version: int = MANIFEST_VERSION
    source: str
    source_size: int
    source_mtime_ns: int
    source_sha256: str
    target_type: str
    llama_cpp_version: str
    derived_size: int
    adapter_sha256: str | None = None


class AdapterFile(Protocol):
    """An adapter whose sha256 the caller has checked (``adapters.ResolvedAdapter``)."""

    path: Path
    sha256: str


class DerivationError(RuntimeError):
    """llama.cpp could not re-quantize the model."""


def default_cache_dir() -> Path:
    return DEFAULT_HOME / "models"


def auto_format(cpu_variant: str) -> FastFormat:
    """BF16 where the CPU has BF16 dot products, else Q8_0 (bench/generators.py: BF16 prefills
    about 1.9x faster than Q8_0 on Zen 4; both keep naive_rag's answers, Q4_0 and IQ4_NL
    do not)."""
    return "bf16" if cpu_variant in _BF16_VARIANTS else "q8_0"


def derived_gguf(source: Path, target: FastFormat, cache_dir: Path | None = None, *,
                 adapter: AdapterFile | None = None) -> Path:
    """The cached fast copy of ``source`` (built now if missing or stale), with ``adapter``
    merged in when given; ``source`` itself when ``target`` is ``none`` (an adapter is then
    the caller's to apply)."""
    if target == "none":
        return source
    adapter_sha256 = adapter.sha256 if adapter else None
    if target == "auto":
        from compose.generators.cpu_backend import ensure_cpu_backend

        target = auto_format(ensure_cpu_backend().variant)
    directory = cache_dir or default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    merged = f".lora-{adapter_sha256[:12]}" if adapter_sha256 else ""
    path = directory / f"{source.stem}.{target}{merged}.gguf"
    manifest_path = path.with_suffix(".json")
    if _is_current(path, manifest_path, source, target, adapter_sha256):
        return path
    with open(directory / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be deriving the same file
        if not _is_current(path, manifest_path, source, target, adapter_sha256):
            _derive(source, target, path, manifest_path, adapter)
    return path


def read_manifest(manifest_path: Path) -> DerivedManifest | None:
    try:
        return DerivedManifest.model_validate_json(manifest_path.read_text())
    except (OSError, ValidationError, ValueError):
        return None


def _is_current(path: Path, manifest_path: Path, source: Path, target: str,
                adapter_sha256: str | None) -> bool:
    manifest = read_manifest(manifest_path)
    if manifest is None or not path.is_file():
        return False
    stat = source.stat()
    if (manifest.version, manifest.target_type, manifest.llama_cpp_version,
            manifest.derived_size, manifest.source, manifest.adapter_sha256) != (
            MANIFEST_VERSION, target, _llama_version(), path.stat().st_size, str(source),
            adapter_sha256):
        return False
    if (manifest.source_size, manifest.source_mtime_ns) == (stat.st_size, stat.st_mtime_ns):
        return True  # hashing ~100 MB on every start would cost more than loading the model
    return manifest.source_sha256 == sha256_file(source)


def _derive(source: Path, target: str, path: Path, manifest_path: Path,
            adapter: AdapterFile | None) -> None:
    from compose.generators.cpu_backend import ensure_cpu_backend

    ensure_cpu_backend()
    merging = f" with {adapter.path.name} merged" if adapter else ""
    print(f"composerag: converting {source.name} to {target.upper()}{merging} once for "
          f"llama.cpp's fast CPU path -> {path}", file=sys.stderr)
    stat = source.stat()
    digest = sha256_file(source)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".derive-") as work:
        temp = Path(work) / path.name
        if adapter is None:
            _quantize(source, temp, _FTYPES[target])
        else:
            from compose.generators.lora_merge import LoraMergeError, merge_lora

            base_f32, merged_f32 = Path(work) / "base.f32.gguf", Path(work) / "merged.f32.gguf"
            _quantize(source, base_f32, _F32)
            try:
                merge_lora(base_f32, adapter.path, merged_f32)
            except LoraMergeError as exc:
                raise LoraMergeError(f"adapter {adapter.path.name} does not fit the base model "
                                     f"{source.name}: {exc}") from exc
            base_f32.unlink()
            _quantize(merged_f32, temp, _FTYPES[target])
        os.replace(temp, path)
    manifest = DerivedManifest(
        source=str(source), source_size=stat.st_size, source_mtime_ns=stat.st_mtime_ns,
        source_sha256=digest, target_type=target, llama_cpp_version=_llama_version(),
        derived_size=path.stat().st_size, adapter_sha256=adapter.sha256 if adapter else None)
    temp_manifest = manifest_path.with_suffix(".json.part")
    temp_manifest.write_text(manifest.model_dump_json(indent=2))
    os.replace(temp_manifest, manifest_path)


def _quantize(source: Path, out: Path, ftype: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = len(os.sched_getaffinity(0))
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
    if status != 0:
        raise DerivationError(f"llama.cpp failed to quantize {source} to ftype {ftype} "
                              f"(status {status})")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _llama_version() -> str:
    from importlib.metadata import version

    return version("llama-cpp-python")


def slow_type_hint(file_type: int | None, path: Path) -> str | None:
    """A one-line hint for a user GGUF whose weight type has no fast x86 path."""
    if file_type is None or file_type in FAST_FILE_TYPES:
        return None
    return (f"composerag: {path.name} uses a weight type (general.file_type={file_type}) with no "
            "fast llama.cpp CPU path here; Q8_0 or Q4_0 prefill several times faster "
            "(llama-quantize --allow-requantize IN OUT Q8_0)")

"""LoRA adapters on a llama.cpp base model: which file ``generator.adapter`` means, and
whether it fits the model being loaded.

An adapter only means something on the model it was trained on. llama.cpp itself checks the
architecture name and each tensor's shape, so an adapter for another model of the same shapes
(another vocabulary, say) would load without complaint. ``compose.tune.export`` therefore
writes a sidecar manifest (``<adapter>.gguf.json``) with the base's architecture, depth, width and
vocabulary size as read from its GGUF, and they are compared here with the base GGUF before
it is loaded. Those are properties of the model, not of its weight encoding, so the BF16 or
Q8_0 copy that ``fast_gguf`` derives from the shipped file counts as the same base. An
adapter without a manifest is left to llama.cpp's own checks (``refused_by_llama``; the
llama_cpp backend detects their failure itself, which llama-cpp-python 0.3.36 does not).

The adapter file's sha256 names it in the generator's ``model_id``, which every cache key
includes, so cached answers of the base model are never served for the tuned one.

Settings: ``auto`` (the default: the shipped adapter on the model it was tuned for, nothing
on any other model); ``none``; ``tuned``, the adapter shipped in ``compose/adapters/``; or a
path to an adapter ``.gguf``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from compose.generators.fast_gguf import sha256_file
from compose.generators.models import package_dir

SHIPPED = {"tuned": "smollm2-135m-tuned.gguf"}
# ``auto`` (the default) applies the shipped adapter to the model it was trained on, by name:
# any other model runs untuned rather than failing on a foreign adapter.
SHIPPED_FOR = {"smollm2-135m": "tuned"}
MANIFEST_VERSION = 1


class AdapterError(ValueError):
    """The adapter is missing, does not fit the base model, or the backend cannot run it."""


class BaseSignature(BaseModel):
    """What an adapter's tensors and token ids depend on, from a base GGUF's metadata."""

    architecture: str
    n_layer: int
    n_embd: int
    n_vocab: int

    def describe(self) -> str:
        return (f"{self.architecture}, {self.n_layer} layers, n_embd {self.n_embd}, "
                f"vocabulary {self.n_vocab}")


class AdapterManifest(BaseModel):
    """The sidecar of an exported adapter: its base, its LoRA shape, its training recipe."""

    version: int = MANIFEST_VERSION
    base_model: str
    base: BaseSignature
    lora_rank: int
    lora_alpha: float
    target_modules: list[str]
    outtype: str
    adapter_sha256: str
    converter: str = Field(description="The llama.cpp conversion script that wrote the file.")
    recipe: dict[str, Any] = Field(default_factory=dict,
                                   description="Training settings, free-form.")


class ResolvedAdapter(BaseModel):
    path: Path
    sha256: str
    manifest: AdapterManifest | None = None

    @property
    def digest(self) -> str:
        """The short form used in model ids."""
        return self.sha256[:12]


def manifest_path(adapter: Path) -> Path:
    return adapter.with_name(adapter.name + ".json")


def resolve_adapter(setting: str, model_path: Path, model: str = "") -> ResolvedAdapter | None:
    """The adapter ``setting`` names, checked against the base GGUF ``model_path``;
    ``model`` is the generator's model setting, which ``auto`` goes by."""
    if setting == "auto":
        shipped = SHIPPED_FOR.get(model)
        if shipped is None or not (package_dir("compose.adapters") / SHIPPED[shipped]).is_file():
            return None
        setting = shipped
    if setting == "none":
        return None
    if setting in SHIPPED:
        path = package_dir("compose.adapters") / SHIPPED[setting]
        if not path.is_file():
            raise AdapterError(f"generator.adapter={setting!r}: this composerag ships no tuned "
                               f"adapter yet ({path} is missing); use 'none' or an adapter path")
    else:
        path = Path(setting).expanduser()
        if (path / "adapter_config.json").is_file():
            raise AdapterError(f"{path} is a peft adapter directory; llama.cpp needs it "
                               "exported first (compose.tune.export.export_adapter)")
        if not path.is_file():
            raise AdapterError(f"generator.adapter={setting!r} is neither 'none', 'tuned' nor "
                               "an existing adapter .gguf file")
    adapter = ResolvedAdapter(path=path, sha256=sha256_file(path),
                              manifest=read_manifest(path))
    if adapter.manifest is not None:
        _check_fits(adapter, adapter.manifest, model_path)
    return adapter


def read_manifest(adapter: Path) -> AdapterManifest | None:
    """The sidecar manifest, None when there is none; a damaged one is an error."""
    sidecar = manifest_path(adapter)
    if not sidecar.is_file():
        return None
    try:
        return AdapterManifest.model_validate_json(sidecar.read_text())
    except ValueError as exc:  # pydantic's ValidationError included
        raise AdapterError(f"adapter manifest {sidecar} is unreadable: {exc}") from exc


def _check_fits(adapter: ResolvedAdapter, manifest: AdapterManifest, model_path: Path) -> None:
    if manifest.adapter_sha256 != adapter.sha256:
        raise AdapterError(f"{manifest_path(adapter.path)} describes another file than "
                           f"{adapter.path.name} (sha256 differs): re-export the adapter")
    base = gguf_signature(model_path)
    if manifest.base != base:
        raise AdapterError(
            f"adapter {adapter.path.name} was trained for {manifest.base_model} "
            f"({manifest.base.describe()}), not for the base model {model_path.name} "
            f"({base.describe()})")


def refused_by_llama(adapter: ResolvedAdapter, model_path: Path) -> AdapterError:
    """The error for an adapter that llama.cpp would not load."""
    made_for = (f"was trained for {adapter.manifest.base_model}" if adapter.manifest
                else "has no manifest saying which base model it was trained for")
    return AdapterError(f"llama.cpp refused adapter {adapter.path.name} on the base model "
                        f"{model_path.name}: its architecture or tensor shapes differ (the "
                        f"adapter {made_for})")


def refuse_adapter(setting: str, backend: str) -> None:
    """Backends that cannot apply a llama.cpp adapter say so instead of ignoring it."""
    if setting not in ("none", "auto"):
        raise AdapterError(f"generator.adapter={setting!r}: LoRA adapters are applied by the "
                           f"llama_cpp backend only, not by {backend}")


@lru_cache(maxsize=16)
def _signature(path: str, size: int, mtime_ns: int) -> BaseSignature:
    import llama_cpp
    from llama_cpp import _internals

    from compose.generators.cpu_backend import ensure_cpu_backend

    ensure_cpu_backend()  # choose the CPU kernels before any llama.cpp load would
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True  # metadata and vocabulary only: no weights are read
    model = _internals.LlamaModel(path_model=path, params=params, verbose=False)
    try:
        metadata = model.metadata()
        architecture = metadata["general.architecture"]
        return BaseSignature(
            architecture=architecture, n_layer=int(metadata[f"{architecture}.block_count"]),
            n_embd=int(metadata[f"{architecture}.embedding_length"]), n_vocab=model.n_vocab())
    finally:
        model.close()  # type: ignore[no-untyped-call]  # llama_cpp leaves it unannotated


def gguf_signature(path: Path) -> BaseSignature:
    """A model GGUF's signature (cached per file version: loading the vocabulary takes time)."""
    stat = path.stat()
    return _signature(str(path), stat.st_size, stat.st_mtime_ns)

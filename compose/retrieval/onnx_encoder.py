"""The sentence-transformers encoder on onnxruntime: exported from torch once, then cached.

Why: a CLI process that embeds one query spends 3-4 s importing torch and
sentence-transformers before it can start. onnxruntime, numpy and ``tokenizers`` import in a
fraction of that, so after a one-time export the run-time path here imports nothing else.

The export (torch, once) writes the HF model's ``last_hidden_state`` graph; mean pooling over
the attention mask and L2 normalisation, as in sentence-transformers' pipeline for this kind of
model, run in numpy. Before an export is kept, its vectors are compared with
sentence-transformers' on fixed sample sentences and it is refused above ``TOLERANCE``, so
indexes built on either runtime can be queried with the other.

Exports live under ``<cache>/<encoder-name>-<short source hash>/`` (``model.onnx`` and
``manifest.json``), written to a temporary directory and renamed into place. An export whose
manifest, source hash or ONNX file does not check out is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from pydantic import BaseModel, ValidationError

from compose.config import DEFAULT_HOME
from compose.retrieval.integrity import file_sha256

if TYPE_CHECKING:  # torch takes seconds to import: only the one-time export uses it
    import torch
    from sentence_transformers.sentence_transformer.modules import Transformer
    from transformers import PreTrainedTokenizerBase

CACHE_ENV = "COMPOSERAG_ONNX_CACHE"
TOLERANCE = 1e-4
FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
OUTPUT_NAME = "last_hidden_state"
SOURCE_FILES = (
    "config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
)
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"

# Short, long (truncated at max_seq_length), accented, numeric and empty: the export check
# runs them as one batch of mixed lengths, so padding and truncation are both exercised.
SAMPLE_SENTENCES = (
    "hello",
    "Who designed the Velmora Bridge?",
    "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
    "Café naïve résumé: accents, punctuation; and CamelCase tokens like OpenAI.",
    "In 1987, 42 of the 365 samples (11.5%) tested positive at p < 0.05.",
    "",
    " ".join(
        ["Retrieval-augmented generation grounds answers in passages from a corpus."] * 60
    ),
)


class OnnxEncoderError(RuntimeError):
    """The encoder cannot run on onnxruntime: unsupported pipeline or a failed export check."""


class OnnxManifest(BaseModel):
    """What an export was made from and how well it matched torch when it was made."""

    format_version: int = FORMAT_VERSION
    encoder: str
    source_dir: str
    source_hash: str
    weights_file: str
    weights_sha256: str
    onnx_sha256: str
    onnx_bytes: int
    input_names: list[str]
    dimension: int
    max_seq_length: int
    pad_id: int
    pad_token: str
    max_abs_diff: float
    torch_version: str
    onnxruntime_version: str
    onnx_version: str


def cache_root() -> Path:
    """``$COMPOSERAG_ONNX_CACHE`` if set (tests, read-only homes), else ``~/.cache/...``."""
    override = os.environ.get(CACHE_ENV)
    return Path(override).expanduser() if override else DEFAULT_HOME / "onnx"


def weights_file(source_dir: Path) -> Path:
    """The weights file transformers loads: safetensors first, as ``from_pretrained`` does."""
    for name in WEIGHTS_FILES:
        if (source_dir / name).is_file():
            return source_dir / name
    raise OnnxEncoderError(f"no weights file ({', '.join(WEIGHTS_FILES)}) in {source_dir}")


def source_hash(source_dir: Path) -> str:
    """One sha256 over every file that changes the vectors, so any edit invalidates exports."""
    digest = hashlib.sha256()
    for relative in (*SOURCE_FILES, *pooling_configs(source_dir)):
        path = source_dir / relative
        if path.is_file():
            digest.update(f"{relative}\0{file_sha256(path)}\0".encode())
    return digest.hexdigest()


def pooling_configs(source_dir: Path) -> list[str]:
    """Relative paths of the Pooling modules' configs named in ``modules.json``."""
    return [f"{module['path']}/config.json" for module in read_modules(source_dir)
            if module["type"] == _POOLING]


def read_modules(source_dir: Path) -> list[dict[str, Any]]:
    path = source_dir / "modules.json"
    if not path.is_file():
        raise OnnxEncoderError(f"{source_dir} has no modules.json (not a sentence-transformers "
                               "directory)")
    modules: list[dict[str, Any]] = json.loads(path.read_text())
    return modules


def check_pipeline(source_dir: Path) -> None:
    """Refuse pipelines whose numpy side is not Transformer -> mean Pooling [-> Normalize]."""
    types = [module["type"] for module in read_modules(source_dir)]
    if types not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]):
        raise OnnxEncoderError(f"{source_dir}: ONNX path supports Transformer, Pooling "
                               f"[, Normalize] only, not {types}")
    for relative in pooling_configs(source_dir):
        config = json.loads((source_dir / relative).read_text())
        modes = sorted(key for key, on in config.items() if key.startswith("pooling_mode") and on)
        if modes != ["pooling_mode_mean_tokens"]:
            raise OnnxEncoderError(f"{source_dir}: ONNX path supports mean pooling only, "
                                   f"not {modes}")
    if not (source_dir / "tokenizer.json").is_file():
        raise OnnxEncoderError(f"{source_dir} has no tokenizer.json (a fast tokenizer is needed)")


def export_dir(root: Path, name: str, digest: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name) or "encoder"
    return root / f"{stem}-{digest[:12]}"


class OnnxEncoder:
    """An exported encoder: tokenizers for the text, onnxruntime for the model, numpy for the
    pooling. Imports neither torch nor transformers."""

    def __init__(self, source_dir: Path, manifest: OnnxManifest, model: Path,
                 threads: int | None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle workers would otherwise spin and steal cores from the generator that runs next.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model), options,
                                            providers=["CPUExecutionProvider"])
        self.manifest = manifest
        self.tokenizer = Tokenizer.from_file(str(source_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=manifest.max_seq_length)
        self.tokenizer.enable_padding(pad_id=manifest.pad_id, pad_token=manifest.pad_token)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit-normalised float32 vectors, longest texts batched together as
        sentence-transformers does, so little compute goes to padding."""
        vectors = np.zeros((len(texts), self.manifest.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            vectors[chunk] = self.encode_batch([texts[i] for i in chunk])
        return vectors

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feed = {name: np.asarray(columns[name], dtype=np.int64)
                for name in self.manifest.input_names}
        (hidden,) = self.session.run([OUTPUT_NAME], feed)
        return mean_pool_normalize(hidden, np.asarray(columns["attention_mask"]))


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean Pooling then Normalize, with the same epsilons."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled: np.ndarray = summed / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    normalized: np.ndarray = pooled / np.maximum(norms, 1e-12)
    return normalized.astype(np.float32)


def open_export(directory: Path, source_dir: Path, digest: str,
                threads: int | None) -> OnnxEncoder:
    """Load a cached export, raising ``ValueError`` with the reason if it must be rebuilt."""
    manifest_path, model_path = directory / MANIFEST_FILE, directory / MODEL_FILE
    if not manifest_path.is_file() or not model_path.is_file():
        raise ValueError("incomplete export")
    try:
        manifest = OnnxManifest.model_validate_json(manifest_path.read_text())
    except ValidationError as error:
        raise ValueError(f"unreadable manifest ({error.error_count()} errors)") from error
    if manifest.format_version != FORMAT_VERSION:
        raise ValueError(f"format version {manifest.format_version}")
    if manifest.source_hash != digest:
        raise ValueError("source model files changed")
    if (model_path.stat().st_size != manifest.onnx_bytes
            or file_sha256(model_path) != manifest.onnx_sha256):
        raise ValueError("model.onnx does not match its manifest")
    try:
        return OnnxEncoder(source_dir, manifest, model_path, threads)
    except Exception as error:  # onnxruntime raises its own, unexported, exception types
        raise ValueError(f"onnxruntime cannot load it: {error}") from error


def load_onnx_encoder(name: str, source_dir: Path, *, threads: int | None = None,
                      root: Path | None = None) -> OnnxEncoder:
    """The cached export of ``name`` (at ``source_dir``), exported first if missing or stale."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise OnnxEncoderError("onnxruntime is not installed (pip install onnxruntime onnx)")
    check_pipeline(source_dir)
    digest = source_hash(source_dir)
    directory = export_dir(root or cache_root(), name, digest)
    if directory.exists():
        try:
            return open_export(directory, source_dir, digest, threads)
        except ValueError as reason:
            print(f"composerag: cached ONNX export {directory} is stale ({reason}); rebuilding",
                  file=sys.stderr)
    else:
        print(f"composerag: exporting encoder {name!r} to ONNX once, into {directory}",
              file=sys.stderr)
    export(name, source_dir, digest, directory)
    try:
        return open_export(directory, source_dir, digest, threads)
    except ValueError as reason:
        raise OnnxEncoderError(f"fresh ONNX export {directory} does not load: {reason}") from None


def export(name: str, source_dir: Path, digest: str, directory: Path) -> None:
    """Export with torch, check against sentence-transformers, then rename into place."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".exporting-", dir=directory.parent))
    try:
        try:
            manifest = write_export(name, source_dir, digest, staging)
        except Exception as error:  # tracing an unusual model can fail in many ways
            raise OnnxEncoderError(f"ONNX export of {name!r} failed: {error}") from error
        if manifest.max_abs_diff > TOLERANCE:
            raise OnnxEncoderError(
                f"ONNX export of {name!r} differs from torch by {manifest.max_abs_diff:.2e} "
                f"(max abs, tolerance {TOLERANCE:.0e}); refusing it. Use encoder_runtime: torch."
            )
        publish(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, directory: Path) -> None:
    """Replace a stale export; if another process published meanwhile, keep theirs."""
    shutil.rmtree(directory, ignore_errors=True)
    try:
        staging.rename(directory)
    except OSError:
        if not (directory / MANIFEST_FILE).is_file():
            raise


def write_export(name: str, source_dir: Path, digest: str, staging: Path) -> OnnxManifest:
    """Write ``model.onnx`` and ``manifest.json`` into ``staging``; returns the manifest."""
    import onnx
    import onnxruntime
    import torch

    from compose.retrieval.encoder import load_encoder

    model = load_encoder(name)
    transformer = cast("Transformer", model[0])  # the pipeline's first module (check_pipeline)
    tokenizer = cast("PreTrainedTokenizerBase", transformer.tokenizer)  # loaded with the model
    input_names: list[str] = [n for n in ("input_ids", "attention_mask", "token_type_ids")
                   if n in tokenizer.model_input_names]
    dummy = tokenizer(list(SAMPLE_SENTENCES[:2]), padding=True, return_tensors="pt")
    export_hidden_states(transformer.auto_model, [dummy[n] for n in input_names], input_names,
                         staging / MODEL_FILE)
    weights = weights_file(source_dir)
    manifest = OnnxManifest(
        encoder=name,
        source_dir=str(source_dir),
        source_hash=digest,
        weights_file=weights.name,
        weights_sha256=file_sha256(weights),
        onnx_sha256=file_sha256(staging / MODEL_FILE),
        onnx_bytes=(staging / MODEL_FILE).stat().st_size,
        input_names=input_names,
        dimension=transformer.auto_model.config.hidden_size,
        max_seq_length=cast(int, model.max_seq_length),  # set by the model's config
        pad_id=tokenizer.pad_token_id,
        pad_token=tokenizer.pad_token,
        max_abs_diff=0.0,
        torch_version=torch.__version__,
        onnxruntime_version=onnxruntime.__version__,
        onnx_version=onnx.__version__,
    )
    samples = list(SAMPLE_SENTENCES)
    expected = model.encode(samples, normalize_embeddings=True, show_progress_bar=False)
    actual = OnnxEncoder(source_dir, manifest, staging / MODEL_FILE, None).encode(samples)
    manifest.max_abs_diff = float(np.abs(actual - expected).max())
    (staging / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    return manifest


def export_hidden_states(auto_model: torch.nn.Module, dummy: list[torch.Tensor],
                         input_names: list[str], path: Path) -> None:
    """``torch.onnx.export`` of the HF model's last hidden state, batch and sequence dynamic.
    Only that output is exported: BERT's pooler head is unused by mean pooling. The dummy
    batch is padded, so tracing keeps the attention-mask path (an all-ones mask may be
    skipped by transformers and would be traced out)."""
    import torch

    class HiddenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = auto_model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            hidden: torch.Tensor = self.inner(
                **dict(zip(input_names, inputs, strict=True))).last_hidden_state
            return hidden

    axes = {name: {0: "batch", 1: "sequence"} for name in (*input_names, OUTPUT_NAME)}
    # The tracer's warnings (shape checks frozen as constants) are what the check against
    # sentence-transformers on mixed-length batches guards; shown to users they only alarm.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(HiddenStates().eval(), tuple(dummy), str(path), input_names=input_names,
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=17,
                          dynamo=False)

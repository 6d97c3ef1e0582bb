"""The ONNX encoder path on the real embedded MiniLM: same vectors as torch, a checked cache,
and no torch import at run time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from compose.config import RetrieverConfig  # noqa: E402
from compose.corpus import Passage  # noqa: E402
from compose.retrieval import onnx_encoder  # noqa: E402
from compose.retrieval.encoder import DEFAULT_ENCODER, embed, resolve_encoder  # noqa: E402
from compose.retrieval.index import build_index  # noqa: E402
from compose.retrieval.onnx_encoder import (  # noqa: E402
    MANIFEST_FILE,
    MODEL_FILE,
    OnnxEncoder,
    OnnxEncoderError,
    OnnxManifest,
    load_onnx_encoder,
)
from compose.retrieval.retriever import open_retriever  # noqa: E402

LONG = " ".join(f"Sentence {i} of a passage about bridges and engineers." for i in range(80))
SENTENCES = [
    "Who designed the Velmora Bridge?",
    "hi",
    "  leading and trailing whitespace  ",
    "The committee approved the 2031 budget after a 14-hour session on Tuesday.",
    LONG,
    "Ünïcödé, emoji 🚀 and CJK 橋 are tokenized too.",
]


@pytest.fixture(scope="module")
def source() -> Path:
    return resolve_encoder(DEFAULT_ENCODER)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, source) -> Path:
    """One real export for the module; tests that tamper work on copies of it."""
    root = tmp_path_factory.mktemp("onnx")
    load_onnx_encoder(DEFAULT_ENCODER, source, root=root)
    (directory,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    return directory


@pytest.fixture(scope="module")
def encoder(exported, source) -> OnnxEncoder:
    return load_onnx_encoder(DEFAULT_ENCODER, source, root=exported.parent)


def copy_cache(exported: Path, tmp_path: Path) -> Path:
    shutil.copytree(exported, tmp_path / exported.name)
    return tmp_path / exported.name


def test_onnx_matches_torch_including_truncation_and_mixed_batch(encoder):
    expected = embed(SENTENCES, runtime="torch")
    actual = encoder.encode(SENTENCES, batch_size=4)
    assert actual.shape == (len(SENTENCES), 384) and actual.dtype == np.float32
    assert np.allclose(np.linalg.norm(actual, axis=1), 1.0, atol=1e-5)
    assert np.abs(actual - expected).max() < 1e-4
    assert len(encoder.tokenizer.encode(LONG).ids) == 256  # truncated at max_seq_length
    # Batch composition (padding) does not change a text's vector.
    alone = np.stack([encoder.encode([text])[0] for text in SENTENCES])
    assert np.abs(alone - actual).max() < 1e-5


def test_embed_onnx_runtime_selected_through_env(exported, monkeypatch):
    monkeypatch.setenv(onnx_encoder.CACHE_ENV, str(exported.parent))
    monkeypatch.setenv("COMPOSERAG_ENCODER_RUNTIME", "onnx")
    vectors = embed(SENTENCES[:2], threads=1)
    assert vectors.shape == (2, 384)
    assert np.abs(vectors - embed(SENTENCES[:2], runtime="torch")).max() < 1e-4
    assert embed([], threads=1).shape == (0, 384)
    monkeypatch.setenv("COMPOSERAG_ENCODER_RUNTIME", "gpu")
    with pytest.raises(ValueError, match="COMPOSERAG_ENCODER_RUNTIME"):
        embed(["x"])


def test_retriever_on_onnx_queries_a_torch_built_index(exported, tmp_path, monkeypatch):
    monkeypatch.setenv(onnx_encoder.CACHE_ENV, str(exported.parent))
    monkeypatch.setenv("COMPOSERAG_ENCODER_RUNTIME", "torch")
    passages = [Passage(id=str(i), title=f"Doc {i}", text=text)
                for i, text in enumerate(SENTENCES)]
    build_index(passages, tmp_path / "index", show_progress=False)
    hits = {}
    for runtime in ("torch", "onnx"):
        config = RetrieverConfig(index=str(tmp_path / "index"), mode="dense",
                                 encoder_runtime=runtime, encoder_threads=1)
        hits[runtime] = open_retriever(config).dense_search("who built the bridge", 6)
    assert [d for d, _ in hits["onnx"]] == [d for d, _ in hits["torch"]]
    assert max(abs(a - b) for (_, a), (_, b) in zip(hits["onnx"], hits["torch"],
                                                      strict=True)) < 1e-4


def test_manifest_records_source_versions_and_check(exported, source):
    manifest = OnnxManifest.model_validate_json((exported / MANIFEST_FILE).read_text())
    assert manifest.source_dir == str(source)
    assert manifest.source_hash == onnx_encoder.source_hash(source)
    assert exported.name == f"{DEFAULT_ENCODER}-{manifest.source_hash[:12]}"
    assert manifest.weights_sha256 == onnx_encoder.file_sha256(source / manifest.weights_file)
    assert manifest.onnx_bytes == (exported / MODEL_FILE).stat().st_size
    assert manifest.max_seq_length == 256 and manifest.dimension == 384
    assert 0.0 <= manifest.max_abs_diff < onnx_encoder.TOLERANCE
    import onnxruntime
    import torch

    assert manifest.onnxruntime_version == onnxruntime.__version__
    assert manifest.torch_version == torch.__version__


@pytest.mark.parametrize("tamper", ["source_hash", "truncate_onnx"])
def test_stale_or_corrupt_export_is_rebuilt(exported, source, tmp_path, capsys, tamper):
    directory = copy_cache(exported, tmp_path)
    manifest_path, model_path = directory / MANIFEST_FILE, directory / MODEL_FILE
    if tamper == "source_hash":
        data = json.loads(manifest_path.read_text())
        data["source_hash"] = "0" * 64
        manifest_path.write_text(json.dumps(data))
    else:
        with model_path.open("r+b") as handle:
            handle.truncate(model_path.stat().st_size // 2)
    rebuilt = load_onnx_encoder(DEFAULT_ENCODER, source, root=tmp_path)
    assert "stale" in capsys.readouterr().err
    manifest = OnnxManifest.model_validate_json(manifest_path.read_text())
    assert manifest.source_hash == onnx_encoder.source_hash(source)
    assert model_path.stat().st_size == manifest.onnx_bytes
    torch_vectors = embed(SENTENCES[:1], runtime="torch")
    assert np.abs(rebuilt.encode(SENTENCES[:1]) - torch_vectors).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == [directory.name]  # no staging left behind


def test_export_over_tolerance_is_refused(source, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_encoder, "TOLERANCE", -1.0)
    with pytest.raises(OnnxEncoderError, match="refusing"):
        load_onnx_encoder(DEFAULT_ENCODER, source, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fresh_process_on_onnx_path_does_not_import_torch(exported, encoder):
    script = (
        "import sys, json\n"
        "from compose.retrieval.encoder import embed\n"
        "v = embed(['Who designed the Velmora Bridge?'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers')\n"
        "         if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'vector': v[0].tolist()}))\n"
    )
    env = {**os.environ, onnx_encoder.CACHE_ENV: str(exported.parent),
           "COMPOSERAG_ENCODER_RUNTIME": "auto"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=120, check=True)
    out = json.loads(result.stdout)
    assert out["heavy"] == []
    assert "exporting" not in result.stderr and "stale" not in result.stderr
    expected = encoder.encode(["Who designed the Velmora Bridge?"])[0]
    assert np.abs(np.asarray(out["vector"]) - expected).max() < 1e-6

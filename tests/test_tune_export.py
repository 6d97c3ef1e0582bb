"""LoRA export to llama.cpp and its use in the default backend, all real: a rank-4 peft adapter
on the HF form of the embedded model, llama.cpp's own converter, the embedded model loaded
through llama.cpp with the adapter. peft starts lora_B at zero (no change to the model), so the
test adapter draws it at random: the model's outputs must then change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compose.config import GeneratorConfig
from compose.generators.adapters import (
    AdapterError,
    BaseSignature,
    manifest_path,
    read_manifest,
    resolve_adapter,
)
from compose.generators.base import Message
from compose.generators.factory import get_generator
from compose.generators.fast_gguf import derived_gguf, sha256_file
from compose.generators.llama_cpp import LlamaCppGenerator
from compose.generators.llama_decode import greedy_decode
from compose.generators.models import DEFAULT_MODEL, resolve_gguf
from compose.generators.transformers_backend import dequantized_checkpoint
from compose.tune.export import ExportError, convert_lora, export_adapter

MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SMOLLM2 = BaseSignature(architecture="llama", n_layer=30, n_embd=576, n_vocab=49152)
QUESTION = [
    Message(role="system", content='Answer in JSON: {"answer": "..."}.'),
    Message(role="user", content="Passage: The Velmora Bridge was designed by the engineer "
            "Ilse Ranneth in 1872.\nQuestion: Who designed the Velmora Bridge?"),
]

RIVER = [QUESTION[0], Message(role="user", content="Question: Which river flows through Velmora?")]


def random_lora(base: Path, out: Path) -> Path:
    """A rank-4 peft adapter on every projection, lora_B drawn at random, saved as peft does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=MODULES))
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    peft.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lora")
    peft_dir = random_lora(dequantized_checkpoint(resolve_gguf(DEFAULT_MODEL)), root / "peft")
    return export_adapter(peft_dir, root / "tiny.gguf", recipe={"lora_B": "random"})


def test_the_manifest_records_the_base_and_the_lora(exported):
    manifest = read_manifest(exported)
    assert manifest is not None and manifest.base == SMOLLM2
    assert manifest.base_model == DEFAULT_MODEL and manifest.recipe == {"lora_B": "random"}
    assert (manifest.lora_rank, manifest.lora_alpha) == (4, 8.0)
    assert manifest.target_modules == sorted(MODULES)
    assert manifest.adapter_sha256 == sha256_file(exported) and manifest.outtype == "f32"
    shipped = resolve_gguf(DEFAULT_MODEL)
    for base in (shipped, derived_gguf(shipped, "bf16"), derived_gguf(shipped, "q8_0")):
        resolved = resolve_adapter(str(exported), base)  # derived copies are the same base
        assert resolved is not None and resolved.manifest == manifest


def test_llama_cpp_applies_the_adapter_and_names_it_in_the_model_id(exported):
    base = get_generator(GeneratorConfig(adapter="none"))
    tuned = get_generator(GeneratorConfig(adapter=str(exported), merge_adapter=False))
    digest = sha256_file(exported)[:12]
    assert tuned.model_id == f"{base.model_id}+lora:{digest}"  # so cache keys differ too
    assert tuned.llama._lora_adapter is not None
    plain = base.generate(QUESTION, max_tokens=16)
    adapted = tuned.generate(QUESTION, max_tokens=16)
    assert plain.text != adapted.text


def test_the_merged_adapter_computes_what_the_run_time_adapter_does(exported):
    import numpy as np

    runtime = get_generator(GeneratorConfig(adapter=str(exported), merge_adapter=False,
                                            logprobs=True))
    merged = get_generator(GeneratorConfig(adapter=str(exported), logprobs=True))
    base = get_generator(GeneratorConfig(adapter="none", logprobs=True))
    digest = sha256_file(exported)[:12]
    assert merged.model_id == base.model_id.replace(".gguf", f".lora-{digest}.gguf")
    assert not merged.llama._lora_adapter
    logits = {}
    for name, generator in (("runtime", runtime), ("merged", merged), ("base", base)):
        with generator.exclusive():
            tokens = generator.llama.tokenize(QUESTION[1].content.encode())
            generator.llama.reset()
            generator.llama.eval(tokens)
            logits[name] = np.array(generator.llama.scores[:len(tokens)])
    # Rounding of the folded weights to the fast type moves logits a little; the adapter's
    # own effect (merged against base) is an order of magnitude larger.
    merged_gap = np.abs(logits["merged"] - logits["runtime"]).max(axis=1)
    adapter_effect = np.abs(logits["merged"] - logits["base"]).max(axis=1)
    assert np.median(merged_gap) * 5 < np.median(adapter_effect)
    assert (logits["merged"].argmax(1) == logits["runtime"].argmax(1)).mean() >= 0.9
    assert merged.generate(QUESTION, max_tokens=16).text == \
        runtime.generate(QUESTION, max_tokens=16).text


def test_parallel_answers_apply_the_adapter_too(exported):
    base = get_generator(GeneratorConfig(adapter="none"))
    tuned = get_generator(GeneratorConfig(adapter=str(exported)))
    parallel = tuned.short_answers([RIVER])[0]
    with tuned.exclusive():  # the same forced prompt, decoded on the main context
        prompt = tuned._parallel.prompt_tokens(RIVER)
        main = greedy_decode(tuned.llama, prompt, schema=None, max_tokens=48, stop=['"'])
    assert parallel.complete and parallel.answer == main.text.strip()
    # The answer survives the random adapter; its log-probability moves.
    assert sum(parallel.token_logprobs) == pytest.approx(sum(main.token_logprobs), abs=0.05)
    plain = base.short_answers([RIVER])[0]
    assert abs(sum(plain.token_logprobs) - sum(parallel.token_logprobs)) > 0.3


def test_peft_settings_llama_cpp_cannot_express_are_refused(exported, tmp_path):
    config = json.loads((exported.parent / "peft" / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": True}))
    with pytest.raises(ExportError, match="use_rslora"):
        export_adapter(tmp_path, tmp_path / "out.gguf")


def test_an_adapter_for_another_base_is_refused(exported, tmp_path):
    other = tmp_path / "other.gguf"
    shutil.copy(exported, other)
    manifest = read_manifest(exported)
    manifest_path(other).write_text(manifest.model_copy(update={
        "base_model": "qwen-0.5b", "base": SMOLLM2.model_copy(update={"n_embd": 896})})
        .model_dump_json())
    with pytest.raises(AdapterError, match=r"qwen-0\.5b.*n_embd 896.*SmolLM2-135M-Instruct"):
        LlamaCppGenerator.from_config(GeneratorConfig(adapter=str(other)))


def test_llama_cpp_refuses_an_adapter_of_other_shapes_without_a_manifest(tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tiny = tmp_path / "tiny-llama"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2,
                                 vocab_size=256)).save_pretrained(str(tiny))
    adapter = tmp_path / "tiny.gguf"
    convert_lora(random_lora(tiny, tmp_path / "peft"), tiny, adapter)
    with pytest.raises(AdapterError, match=r"llama\.cpp refused .*SmolLM2-135M-Instruct"):
        LlamaCppGenerator.from_config(GeneratorConfig(adapter=str(adapter), merge_adapter=False))
    with pytest.raises(AdapterError, match=r"tiny\.gguf does not fit .*SmolLM2-135M-Instruct"
                       r".*has shape"):
        LlamaCppGenerator.from_config(GeneratorConfig(adapter=str(adapter)))


def test_settings_that_name_no_usable_adapter(exported, tmp_path):
    from compose.generators.openai_compat import OpenAICompatGenerator
    from compose.generators.transformers_backend import TransformersGenerator

    base = resolve_gguf(DEFAULT_MODEL)
    assert resolve_adapter("none", base) is None
    shipped = resolve_adapter("tuned", base)
    assert shipped is not None and shipped.manifest.base_model == DEFAULT_MODEL
    assert resolve_adapter("auto", base, DEFAULT_MODEL) == shipped  # the default
    assert resolve_adapter("auto", base, "/models/other.gguf") is None
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4}))
    with pytest.raises(AdapterError, match="exported first"):
        resolve_adapter(str(tmp_path), base)
    with pytest.raises(AdapterError, match="neither"):
        resolve_adapter(str(tmp_path / "missing.gguf"), base)
    for backend, generator in (("openai", OpenAICompatGenerator),
                               ("transformers", TransformersGenerator)):
        config = GeneratorConfig(backend=backend, base_url="http://127.0.0.1:9",
                                 adapter=str(exported))
        with pytest.raises(AdapterError, match="llama_cpp backend only"):
            generator.from_config(config)

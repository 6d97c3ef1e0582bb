"""LoRA training on the real embedded model: a few steps lower the loss, the exported adapter
changes what llama.cpp answers, and a killed run resumes to the same adapter."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compose.tune.example import ModuleCase, render_example
from compose.tune.train import CheckpointMismatch, TrainConfig, train

FACTS = [("Velmora Bridge", "Ana Caskel"), ("Orrin Tower", "Tomas Vell"),
         ("Kestrel Dam", "Ilse Marrow"), ("Haldane Hall", "Piet Osgood")]


def write_data(directory: Path) -> Path:
    """Eight reading examples whose answers the untrained model does not give."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (place, person) in enumerate(FACTS * 2):
        passages = [{"id": "p1", "title": place, "text": f"{place} was designed by {person}."},
                    {"id": "p2", "title": "Harbor", "text": "The harbor opened in 1870."}]
        copy = i >= len(FACTS)  # the second copy has its passages permuted (CORD pairs)
        case = ModuleCase(module="answer", input={"question": f"Who designed {place}?",
                                                  "passages": passages[::-1 if copy else 1]},
                          output={"answer": person.upper(), "citations": ["p1"]},
                          source=f"test:{i % len(FACTS)}", group=f"test:{i % len(FACTS)}",
                          variant="perm1" if copy else "")
        lines.append(render_example(case).model_dump_json())
    (directory / "train.jsonl").write_text("\n".join(lines) + "\n")
    return directory


def config(data: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(data=data, out=out, rank=4, alpha=8, lora_layers=4, epochs=2,
                    examples_per_step=2, learning_rate=3e-3, warmup_steps=0,
                    checkpoint_every=1, threads=2, dropout=0.0)
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    data = write_data(root / "data")
    result = train(config(data, root / "run"))
    return data, root / "run", result


def test_training_lowers_the_loss(trained):
    _, _, result = trained
    assert result.finished and result.steps == result.total_steps == 8
    first, last = sum(result.losses[:2]) / 2, sum(result.losses[-2:]) / 2
    assert last < 0.7 * first
    assert result.tokens_per_s > 0 and result.target_tokens > 0


def test_a_changed_setting_refuses_the_checkpoint(trained):
    data, run, _ = trained
    with pytest.raises(CheckpointMismatch, match="--restart"):
        train(config(data, run, rank=8))


def test_exported_adapter_changes_llama_cpp_answers(trained):
    from compose.config import GeneratorConfig
    from compose.generators.factory import get_generator
    from compose.tune.export import export_adapter

    data, run, result = trained
    adapter = export_adapter(Path(result.adapter_dir), run / "adapter.gguf")
    example = json.loads((data / "train.jsonl").read_text().splitlines()[0])
    messages = render_example(ModuleCase.model_validate(example)).messages
    schema = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"]}
    base = get_generator(GeneratorConfig(adapter="none")).generate(messages, json_schema=schema)
    tuned_generator = get_generator(GeneratorConfig(adapter=str(adapter)))
    tuned = tuned_generator.generate(messages, json_schema=schema)
    assert tuned.text != base.text
    assert "ANA CASKEL" in tuned.text or "CASKEL" in tuned.text.upper()


def test_killed_training_resumes_to_the_same_adapter(trained, tmp_path):
    import torch

    data, _, reference = trained
    out = tmp_path / "run"
    script = (f"from compose.tune.train import TrainConfig, train; "
              f"train(TrainConfig.model_validate_json({config(data, out).model_dump_json()!r}))")
    child = subprocess.Popen([sys.executable, "-c", script])
    state = out / "checkpoint" / "state.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        if state.is_file() and torch.load(state, weights_only=False)["step"] >= 3:
            break
        time.sleep(0.2)
    child.kill()
    child.wait()
    killed_at = torch.load(state, weights_only=False)["step"]
    assert 3 <= killed_at < 8, "the child should have been killed mid-run"
    resumed = train(config(data, out))
    assert resumed.finished and resumed.steps == 8
    assert resumed.losses == reference.losses
    ours = torch.load(out / "checkpoint" / "state.pt", weights_only=False)["adapter"]
    theirs = torch.load(Path(reference.adapter_dir).parent / "checkpoint" / "state.pt",
                        weights_only=False)["adapter"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)

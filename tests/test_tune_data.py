"""Training examples: rendered exactly as the modules prompt at run time, built from the real
training files, split without leaks, and tokenized as llama.cpp tokenizes."""

from __future__ import annotations

import json
import random

import pytest

from compose.registry import get_module
from compose.runtime import ModuleContext
from compose.tune.dataset import Recipe, build_dataset, read_examples
from compose.tune.example import ModuleCase, render_example
from compose.tune.sources import SOURCES, read_length, window
from tests.conftest import SHARED_DATA, scripted_runtime

TRAIN_DIR = SHARED_DATA / "train"
needs_train = pytest.mark.skipif(not TRAIN_DIR.is_dir(), reason=f"{TRAIN_DIR} is absent")

PASSAGES = [{"id": "a", "title": "Velmora Bridge", "text": "Designed by Ana Caskel in 1911."},
            {"id": "b", "title": "Harbor", "text": "The harbor opened in 1870."}]
CASES = [
    ModuleCase(module="answer", input={"question": "Who designed the bridge?",
                                       "passages": PASSAGES},
               output={"answer": "Ana Caskel", "citations": ["a"]}, source="t:1"),
    ModuleCase(module="verify", input={"question": "Who designed the bridge?",
                                       "answer": "Ana Caskel", "passages": PASSAGES},
               output={"grounded": True, "reason": "Passage 1 says so."}, source="t:2"),
    ModuleCase(module="decompose", params={"max_sub_questions": 3},
               input={"question": "Where was the designer of the bridge born?"},
               output={"sub_questions": ["Who designed the bridge?", "Where was #1 born?"]},
               source="t:3"),
    ModuleCase(module="retrieval_decision", input={"question": "When did the harbor open?"},
               output={"retrieve": True, "reason": "No facts yet."}, source="t:4"),
    # an eight-passage read, as compose_rag's final synthesis reads: the gold one is last
    ModuleCase(module="answer", params={"max_passages": 8},
               input={"question": "When did the harbor open?", "passages": [
                   *[{"id": f"x{i}", "title": f"Other {i}", "text": f"Fact {i}."}
                     for i in range(7)], PASSAGES[1]]},
               output={"answer": "1870", "citations": ["b"]}, source="t:5"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.module)
def test_example_is_the_run_time_prompt_and_its_reply_gives_the_gold_output(case):
    """The module, run on the case's input with a generator that replies with the example's
    target, sends exactly the example's messages and returns exactly the gold output."""
    example = render_example(case)
    runtime = scripted_runtime([json.loads(example.target)])
    module = get_module(case.module)(case.params)
    output = module(case.input, ModuleContext(runtime))
    assert runtime.generator.calls == [example.messages]
    gold = module.Output.model_validate(case.output).model_dump()
    assert {k: v for k, v in output.model_dump().items() if k in case.output} == {
        k: gold[k] for k in case.output}


def test_target_keys_follow_the_grammar_order_required_first():
    example = render_example(CASES[1])  # verify emits reason before grounded
    assert list(json.loads(example.target)) == ["reason", "grounded"]
    answer = render_example(CASES[0])
    assert answer.target == '{"answer": "Ana Caskel", "citations": [1]}'


def test_invalid_gold_output_is_refused():
    bad = CASES[0].model_copy(update={"output": {"answer": "x" * 200, "citations": []}})
    with pytest.raises(ValueError):
        render_example(bad)


def test_window_keeps_the_answer_and_whole_sentences():
    text = " ".join(f"Sentence number {i} says something about topic {i}." for i in range(40))
    start = text.index("number 30")
    piece = window(text, start, limit=200)
    assert "number 30" in piece and len(piece) <= 200
    assert piece.startswith("Sentence") and piece.endswith(".")


@needs_train
def test_build_dataset_from_real_files_splits_by_row_and_permutes_reading(tmp_path):
    recipe = Recipe(caps={"squad": {"answer": 40, "verify": 10, "decompose": 5},
                          "twowiki": {"answer": 20, "decompose": 10},
                          "strategyqa": {"decompose": 10}},
                    permuted_share=0.5, valid_cap=10, multi_hop_reads=[5, 8])
    summary = build_dataset(TRAIN_DIR, tmp_path, recipe)
    train = read_examples(tmp_path / "train.jsonl")
    valid = read_examples(tmp_path / "valid.jsonl")
    assert summary.counts["train/answer/squad"] > 40  # 40 cases plus permuted copies
    assert {e.group for e in train}.isdisjoint({e.group for e in valid})
    permuted = [e for e in train if e.variant == "perm1"]
    assert permuted
    original = next(e for e in train if e.group == permuted[0].group and not e.variant
                    and e.module == "answer")
    assert ({p["id"] for p in permuted[0].input["passages"]}
            == {p["id"] for p in original.input["passages"]})
    assert permuted[0].input["passages"] != original.input["passages"]
    twowiki_reads = {len(e.input["passages"]) for e in train
                     if e.module == "answer" and e.source.startswith(SOURCES["twowiki"].file)}
    assert {5, 8} <= twowiki_reads  # as naive RAG reads, and as compose_rag's synthesis reads
    for example in train:
        if example.module == "answer":
            assert len(example.input["passages"]) <= example.params.get("max_passages", 5)
        if example.module == "answer" and example.output["answer"] != "unknown":
            shown = [p["id"] for p in example.input["passages"]]
            cited = json.loads(example.target)["citations"]
            assert [shown[i - 1] for i in cited] == example.output["citations"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["sources"]) == {SOURCES[s].file for s in recipe.caps}
    # deterministic: the same files and recipe give byte-identical data
    again = tmp_path / "again"
    build_dataset(TRAIN_DIR, again, recipe)
    assert (again / "train.jsonl").read_bytes() == (tmp_path / "train.jsonl").read_bytes()


@needs_train
def test_twowiki_plans_use_references_to_earlier_answers():
    path = TRAIN_DIR / SOURCES["twowiki"].file
    plans = [c for c in SOURCES["twowiki"].cases(path) if c.module == "decompose"]
    assert len(plans) > 50
    assert sum("#1" in " ".join(c.output["sub_questions"]) for c in plans) > len(plans) // 2


def test_damaged_example_file_names_the_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(render_example(CASES[0]).model_dump_json() + "\n{\"module\": 3}\n")
    with pytest.raises(ValueError, match=r"train.jsonl:2"):
        read_examples(path)


def test_tokenizer_matches_llama_cpp_prompt_and_ends_with_end_of_turn():
    from compose.generators.models import resolve_gguf
    from compose.tune.tokens import ExampleTokenizer

    tokenizer = ExampleTokenizer(resolve_gguf("smollm2-135m"))
    example = render_example(CASES[0])
    prompt, target = tokenizer(example)
    assert target[-1] == tokenizer.end_of_turn
    text = tokenizer.llama.detokenize(target[:-1]).decode()
    assert text == example.target
    rendered = tokenizer.llama.detokenize(prompt).decode()
    assert rendered.endswith("assistant\n") and "Who designed the bridge?" in rendered


def test_bootstrap_keeps_llm_calls_of_runs_that_scored_well(tmp_path):
    from compose.tune.bootstrap import harvest

    results = tmp_path / "boot.jsonl"
    answer_event = {"node": "answer", "module": "answer", "llm_calls": 1,
                    "input": {"question": "Who designed the bridge?", "passages": PASSAGES},
                    "output": {"answer": "Ana Caskel", "citations": ["a"]}}
    retrieve_event = {"node": "retrieve", "module": "retrieve", "llm_calls": 0,
                      "input": {"query": "bridge"}, "output": {"passages": PASSAGES}}
    runs = [("good", 1.0), ("bad", 0.2), ("broken", None)]
    results.write_text("".join(json.dumps(
        {"id": rid, "metrics": {"f1": f1}, "error": None if f1 is not None else "boom"}) + "\n"
        for rid, f1 in runs))
    results.with_suffix(".traces.jsonl").write_text("".join(json.dumps(
        {"id": rid, "trace": [retrieve_event, answer_event]}) + "\n" for rid, _ in runs))
    cases = harvest(results, "naive_rag", threshold=0.8)
    assert [(c.module, c.group) for c in cases] == [("answer", "boot.jsonl:good")]
    assert json.loads(render_example(cases[0]).target) == {"answer": "Ana Caskel",
                                                           "citations": [1]}


def well_scored_runs(results, ids) -> None:
    """An evaluation results file (with saved traces) where each question scored F1 1.0 with
    one answer call."""
    event = {"node": "answer", "module": "answer", "llm_calls": 1,
             "input": {"question": "Who designed the bridge?", "passages": PASSAGES},
             "output": {"answer": "Ana Caskel", "citations": ["a"]}}
    results.write_text("".join(json.dumps({"id": i, "metrics": {"f1": 1.0}}) + "\n"
                               for i in ids))
    results.with_suffix(".traces.jsonl").write_text("".join(json.dumps(
        {"id": i, "trace": [event]}) + "\n" for i in ids))


def test_bootstrapped_cases_share_their_training_rows_validation_split(tmp_path):
    from compose.tune.bootstrap import harvest, row_groups
    from compose.tune.dataset import is_validation

    train = tmp_path / "2wiki_train.jsonl"
    ids = [f"q{n}" for n in range(1, 41)]
    train.write_text("".join(json.dumps({"_id": i, "question": "?"}) + "\n" for i in ids))
    groups = row_groups(f"2wikimultihopqa:{train}")
    assert groups["q1"] == "2wiki_train.jsonl:1" and groups["q40"] == "2wiki_train.jsonl:40"
    held_out = [i for i in ids if is_validation(groups[i])]
    assert held_out and len(held_out) < len(ids)
    results = tmp_path / "boot.jsonl"
    well_scored_runs(results, ids)
    cases = harvest(results, "naive_rag", groups=groups)
    assert [c.group for c in cases] == [groups[i] for i in ids]
    assert [i for i, c in zip(ids, cases, strict=True) if is_validation(c.group)] == held_out
    assert row_groups(f"asqa:{tmp_path / 'dev.json'}") == {}


def test_build_data_takes_every_bootstrapped_case_when_the_recipe_caps_none(tmp_path):
    from compose.tune.bootstrap import harvest, write_cases

    results = tmp_path / "boot.jsonl"
    ids = [f"q{n}" for n in range(12)]
    well_scored_runs(results, ids)
    cases = tmp_path / "cases.jsonl"
    write_cases(harvest(results, "naive_rag"), cases)
    summary = build_dataset(tmp_path, tmp_path / "data",
                            Recipe(caps={}, bootstrap_files=[str(cases)], permuted_share=0))
    taken = {k: n for k, n in summary.counts.items() if k.endswith("bootstrap:cases.jsonl")}
    assert sum(taken.values()) == len(ids), summary.counts


def test_bootstrap_refuses_evaluation_splits():
    from compose.tune.bootstrap import EvaluationDataError, refuse_evaluation_split

    with pytest.raises(EvaluationDataError, match="evaluation split"):
        refuse_evaluation_split("hotpotqa:../shared/data/hotpotqa/dev200.jsonl")
    refuse_evaluation_split(
        "2wikimultihopqa:../shared/data/train/2wikimultihopqa_train_migres.jsonl")


@needs_train
def test_cli_build_data_with_a_recipe_file_and_a_missing_directory(tmp_path):
    from typer.testing import CliRunner

    from compose.cli.main import app

    recipe = tmp_path / "recipe.json"
    recipe.write_text(Recipe(caps={"strategyqa": {"decompose": 12}}).model_dump_json())
    out = tmp_path / "data"
    runner = CliRunner()
    done = runner.invoke(app, ["tune", "build-data", "--train-dir", str(TRAIN_DIR), "--out",
                               str(out), "--recipe", str(recipe)])
    assert done.exit_code == 0, done.output
    assert len(read_examples(out / "train.jsonl")) == 12
    missing = runner.invoke(app, ["tune", "build-data", "--train-dir", str(tmp_path / "nope"),
                                  "--out", str(out), "--recipe", str(recipe)])
    assert missing.exit_code == 2 and "is missing" in missing.output
    for command in ("build-data", "train", "eval", "bootstrap", "export"):
        shown = runner.invoke(app, ["tune", command, "--help"])
        assert shown.exit_code == 0 and "Example: composerag tune" in shown.output


@needs_train
def test_design_rows_are_the_held_out_training_rows_in_the_benchmark_shape(tmp_path):
    """Graph design choices are made on these rows: none may be a row that tuning trains on,
    and each must load as its benchmark with its gold evidence in the pooled corpus."""
    import subprocess
    import sys
    from pathlib import Path

    from compose.corpora.benchmarks import load_benchmark
    from compose.tune.dataset import is_validation
    from compose.tune.sources import read_rows

    script = Path(__file__).resolve().parents[1] / "bench" / "design_rows.py"
    subprocess.run([sys.executable, str(script), "--train-dir", str(SHARED_DATA / "train"),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    hotpot = load_benchmark(f"hotpotqa:{tmp_path / 'hotpot_valid.jsonl'}")
    twowiki = load_benchmark(f"2wikimultihopqa:{tmp_path / '2wiki_valid.jsonl'}")
    name = "hotpotqa_train_evidence_ecm.jsonl"
    held_out = {f"hp{n}": row for n, row in read_rows(SHARED_DATA / "train" / name)
                if is_validation(f"{name}:{n}")}
    assert [q.id for q in hotpot.questions] == list(held_out)
    texts = {p.id: p.text for p in hotpot.corpus}
    for question in hotpot.questions:
        gold = [texts[i] for i in question.gold_ids]
        assert gold == held_out[question.id]["evidence"]
        assert question.answers == [held_out[question.id]["answer"]]
    wiki = "2wikimultihopqa_train_migres.jsonl"
    kept = [row["question"] for n, row in read_rows(SHARED_DATA / "train" / wiki)
            if is_validation(f"{wiki}:{n}")]
    assert [q.question for q in twowiki.questions] == kept and len(kept) > 50


def test_a_single_read_length_draws_nothing_so_default_cases_do_not_move():
    rng = random.Random(1)
    state = rng.getstate()
    assert read_length(rng, [5]) == 5 and rng.getstate() == state
    assert read_length(rng, [5, 8]) in (5, 8) and rng.getstate() != state

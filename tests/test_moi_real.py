"""MoI against the real embedded model (SmolLM2 GGUF via llama.cpp) over the real demo index:
the module runs end to end with token log-probabilities from a separate scoring model, the
exploratory prompts reuse the KV state of their shared prefix (checked against llama.cpp's own
counters), and ``composerag moi fit-positions`` stores fitted weights."""

from __future__ import annotations

import json

import llama_cpp
import pytest
from typer.testing import CliRunner

from compose.cli.moi import moi_app
from compose.modules.answer import Answer
from compose.modules.moi.explore import explore
from compose.modules.moi.rerank import MoiRerank
from compose.modules.retrieve import Retrieve

QUESTION = "In which town was the designer of the Velmora Bridge born?"


@pytest.fixture(scope="module")
def retrieved(real_runtime):
    return Retrieve(k=3)({"query": QUESTION}, real_runtime.context()).passages


def test_moi_rerank_runs_on_the_real_model(real_runtime, retrieved, tmp_path):
    ctx = real_runtime.context()
    module = MoiRerank(strategy="prior", m=2, signal="logprob", scoring_model="smollm2-135m",
                       max_passage_chars=200, weights_path=str(tmp_path / "w.json"))
    out = module({"question": QUESTION, "passages": retrieved}, ctx)
    assert sorted(p.id for p in out.passages) == sorted(p.id for p in retrieved)
    assert [t.order[0] for t in out.trials] == [retrieved[0].id, retrieved[1].id]
    assert all(t.mean_logprob is not None and t.mean_logprob < 0 for t in out.trials)
    assert out.passages[2].id == retrieved[2].id  # rank 3 is never moved with M = 2
    assert ctx.stats.llm_calls == 2
    # The second prompt starts like the first up to its first passage: instructions and
    # question come from the KV cache.
    question_tokens = module.scorer(ctx).count_tokens(QUESTION)
    assert out.trials[1].cached_tokens > question_tokens
    assert out.tokens_evaluated == out.tokens_prompted - sum(t.cached_tokens for t in out.trials)


def test_answer_layout_passes_are_the_answer_modules_answers(real_runtime, retrieved):
    """In the answer layout an exploratory pass over the retrieval order is exactly the call
    the final answer node makes: same prompt, same schema, same greedy answer."""
    ctx = real_runtime.context()
    module = MoiRerank(mode="vote", strategy="prior", m=2, layout="answer",
                       max_passage_chars=200)
    out = module({"question": QUESTION, "passages": retrieved}, ctx)
    final = Answer(max_passages=3, max_passage_chars=200)(
        {"question": QUESTION, "passages": retrieved}, real_runtime.context())
    assert out.trials[0].order == [p.id for p in retrieved]
    assert out.trials[0].answer == final.answer
    assert out.vote_answer in {t.answer for t in out.trials}


def test_cached_tokens_match_llama_cpp_counters(real_runtime, retrieved):
    """The passes run as parallel sequences: llama.cpp's own counters of evaluated tokens
    equal the prompt tokens not taken from the shared prefix plus the fed answer tokens."""
    module = MoiRerank(max_passage_chars=200)
    generator = real_runtime.generator
    generator.short_answers([module.render(QUESTION, retrieved, [0, 1, 2])])  # make the context

    def evaluated() -> int:
        perf = llama_cpp.llama_perf_context(generator._parallel._context.ctx)
        return perf.n_p_eval + perf.n_eval

    before, decoded = evaluated(), []
    passes = explore(generator, lambda order: module.render(QUESTION, retrieved, order),
                     [[0, 1, 2], [1, 2, 0], [2, 0, 1]], logprobs=True,
                     on_generation=lambda generation: decoded.append(generation.tokens_out))
    # Each answer's last token ends it and is never fed back.
    assert evaluated() - before == (sum(p.tokens_in - p.cached_tokens for p in passes)
                                    + sum(out - 1 for out in decoded))
    assert passes[0].cached_tokens == 0 and all(p.cached_tokens > 0 for p in passes[1:])


@pytest.mark.slow
def test_fit_positions_cli_stores_weights_for_the_model(tmp_path):
    store = tmp_path / "positions.json"
    result = CliRunner().invoke(moi_app, [
        "fit-positions", "--dataset", "demo", "--limit", "2", "--k", "3", "--strategy",
        "random", "--m", "4", "--store", str(store), "--index-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    saved = json.loads(store.read_text())[report["model"]]["3"]
    assert report["questions"] == 2 and len(saved["weights"]) == 3
    assert min(saved["weights"]) == 0.0 and max(saved["weights"]) == 1.0
    assert report["tokens_evaluated"] < report["tokens_prompted"]

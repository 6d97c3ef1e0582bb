"""Mixture-of-Intervention (MoI) re-ranking: order passages by what helps the generator.

A better retrieval ranking can still make the answer worse, because the generator weighs
context slots unevenly. MoI shows the generator M orders of the same passages, scores each
answer (mean token log-probability, agreement with the majority answer, or an oracle F1),
solves the ridge least squares ``y ~ b + X u`` for per-passage utilities ``u`` given the
generator's slot weights, and puts the highest-utility passage into the slot with the
largest weight. The final answer is the next node's job (one more generator call).

The exploratory prompt puts instructions and question before the passages, so the M prompts
share a prefix whose KV state llama.cpp reuses; ``tokens_evaluated`` against
``tokens_prompted`` (M x prompt length) reports the saving. ``layout="answer"`` explores with
the answer node's own prompt instead: a small model may answer much worse with the question
first, and then the passes measure the wrong prompt. Slot weights come from
``composerag moi fit-positions`` (per model), else a primacy default - see
``compose.modules.moi.positions``. ``mode`` also provides the baselines the method is compared with:
``keep`` (the retrieval order), ``shuffle`` (one random order) and ``vote`` (the majority
answer over the M orders is the final answer; graphs route past the answer node on
``voted``).

Usage::

    from compose.modules.moi.rerank import MoiRerank
    out = MoiRerank(strategy="prior", m=2)({"question": "...", "passages": [...]}, ctx)
    out.passages, out.utilities, out.trials, out.tokens_evaluated
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from compose.corpus import ScoredPassage
from compose.generators.factory import get_generator
from compose.module import Module, PromptTemplate
from compose.modules.answer import Answer, AnswerInput, EmittedAnswer, format_passages
from compose.modules.moi.explore import ExplorePass, explore
from compose.modules.moi.signals import Signal, majority_answer, score_passes
from compose.registry import register
from compose.runtime import ModuleContext
from compose.text import UNKNOWN

if TYPE_CHECKING:
    import numpy as np

# numpy and the compose.modules.moi parts built on it (aggregate, positions, proposals) are imported
# where they are used: every built-in module is imported whenever a graph loads, `composerag
# validate` and `graphs` included, and numpy alone is a fifth of their start-up.
Strategy = Literal["cyclic", "random", "prior"]
"""``compose.modules.moi.proposals.Strategy``, restated so the params need no numpy
(tests/test_cli_startup.py checks that the two agree)."""


class MoiInput(BaseModel):
    question: str = Field(min_length=1)
    passages: list[ScoredPassage] = Field(default_factory=list)
    references: list[str] = Field(
        default_factory=list, description="Gold answers; read only by the oracle signal.")


class Trial(BaseModel):
    """One exploratory pass: the order shown (passage ids by slot) and its outcome."""

    order: list[str]
    answer: str
    score: float
    mean_logprob: float | None = None
    tokens_in: int = 0
    cached_tokens: int = 0


class Utility(BaseModel):
    id: str
    utility: float | None = Field(description="None when no tried order moved the passage.")


class MoiOutput(BaseModel):
    passages: list[ScoredPassage]
    utilities: list[Utility] = Field(default_factory=list)
    trials: list[Trial] = Field(default_factory=list)
    slot_weights: list[float] = Field(default_factory=list)
    weights_source: Literal["fitted", "default", "none"] = "none"
    vote_answer: str = ""
    voted: bool = Field(default=False, description="True in vote mode: vote_answer is final.")
    tokens_prompted: int = Field(default=0, description="Sum of the M prompt lengths.")
    tokens_evaluated: int = Field(
        default=0, description="Prompt tokens actually evaluated (the rest reused KV state).")


class MoiParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["moi", "vote", "keep", "shuffle"] = Field(
        default="moi", description="moi: re-rank; vote: majority answer over the orders is "
        "final; keep: the retrieval order; shuffle: one random order (baselines).")
    strategy: Strategy = "cyclic"
    m: int | None = Field(
        default=None, ge=2, description="Orders tried by random (default k) and prior "
        "(default 2); cyclic always tries k.")
    signal: Signal = Field(default="logprob", description="vote mode always uses consistency.")
    ridge_lambda: float = Field(default=0.1, ge=0.0)
    scoring_model: str | None = Field(
        default=None, description="A smaller model for the exploratory passes (name or GGUF "
        "path, graph's generator settings otherwise); None uses the graph's generator.")
    layout: Literal["shared_prefix", "answer"] = Field(
        default="shared_prefix", description="Exploratory prompt. shared_prefix: instructions "
        "and question before the passages, so the M prompts share a KV prefix; answer: the "
        "answer module's own prompt (passages, then question), so each pass gives the answer "
        "the final node would give for that order, with nothing but the system text to share.")
    max_passage_chars: int = Field(default=700, ge=50)
    max_answer_tokens: int = Field(default=48, ge=8)
    seed: int = Field(default=0, description="For the random strategy and shuffle mode.")
    weights_path: str | None = Field(
        default=None, description="Slot-weight store; None is ~/.cache/composerag/"
        "moi_positions.json.")


@register
class MoiRerank(Module[MoiInput, MoiOutput, MoiParams]):
    name = "moi_rerank"
    purpose = ("Re-order passages by debiased utility estimated from answers over several "
               "passage orders (Mixture-of-Intervention).")
    prompt = PromptTemplate(
        version="moi-explore-v1",
        system=("You answer questions with a short phrase: a name, a place, a date, a number, "
                "or yes/no. Use only the numbered passages."),
        user="Question: {question}\n\nPassages:\n{passages}\n\nGive the short answer as JSON.",
    )

    @classmethod
    def trace_summary(cls, output: dict[str, Any]) -> str:
        """The final order, or the vote, and what exploring the orders cost."""
        from rich.markup import escape

        order = "; ".join(escape(p.get("title") or p["id"]) for p in output.get("passages", []))
        trials = output.get("trials") or []
        if output.get("voted"):
            return (f"voted [bold]{escape(output.get('vote_answer', ''))}[/] over "
                    f"{len(trials)} orders")
        if not trials:
            return f"order: {order}"
        return (f"re-ranked after {len(trials)} orders ({output.get('tokens_evaluated', 0)} of "
                f"{output.get('tokens_prompted', 0)} prompt tokens evaluated): {order}")

    def cache_identity(self, ctx: ModuleContext) -> str:
        if self.params.mode in ("keep", "shuffle"):
            return ""
        from compose.modules.moi.positions import PositionStore

        stored = PositionStore(self.params.weights_path).load()
        models = {ctx.generator.model_id, self.scorer(ctx).model_id}
        weights = {m: stored.get(m, {}) for m in sorted(models)}
        return (f"prompt={self.prompt.version}|models={sorted(models)}|weights={weights}"
                f"|logprobs={self.logprobs}")

    @property
    def signal(self) -> Signal:
        return "consistency" if self.params.mode == "vote" else self.params.signal

    @property
    def logprobs(self) -> bool:
        return self.signal == "logprob"

    def scorer(self, ctx: ModuleContext):
        """The generator of the exploratory passes."""
        if self.params.scoring_model is None:
            return ctx.generator
        config = ctx.runtime.config.generator.model_copy(
            update={"model": self.params.scoring_model, "logprobs": self.logprobs})
        return get_generator(config)

    def rng(self, question: str) -> np.random.Generator:
        import numpy as np

        return np.random.default_rng([self.params.seed, zlib.crc32(question.encode())])

    def render(self, question: str, passages: list[ScoredPassage], order: list[int]):
        shown = [passages[p] for p in order]
        if self.params.layout == "answer":
            answer = Answer(max_passage_chars=self.params.max_passage_chars,
                            max_passages=len(shown))
            return answer.prompt.render(**answer.prompt_fields(
                AnswerInput(question=question, passages=shown)))
        return self.prompt.render(
            question=question, passages=format_passages(shown, self.params.max_passage_chars))

    def explore(self, scorer, question: str, passages: list[ScoredPassage],
                orders: list[list[int]], on_generation=None) -> list[ExplorePass]:
        """The exploratory passes over ``orders``, in this module's layout."""
        in_answer_layout = self.params.layout == "answer"
        return explore(
            scorer, lambda order: self.render(question, passages, order), orders,
            logprobs=self.logprobs,
            max_tokens=Answer.max_tokens if in_answer_layout else self.params.max_answer_tokens,
            json_schema=EmittedAnswer.model_json_schema() if in_answer_layout else None,
            on_generation=on_generation)

    def run(self, inp: MoiInput, ctx: ModuleContext) -> MoiOutput:
        import numpy as np

        from compose.modules.moi.aggregate import estimate_utilities, place
        from compose.modules.moi.positions import PositionStore
        from compose.modules.moi.proposals import propose

        passages, k = inp.passages, len(inp.passages)
        if self.params.mode == "keep" or k < 2:
            return MoiOutput(passages=passages)
        if self.params.mode == "shuffle":
            return MoiOutput(passages=[passages[p] for p in self.rng(inp.question).permutation(k)])
        scorer = self.scorer(ctx)
        orders = propose(self.params.strategy, k, self.params.m, self.rng(inp.question))
        passes = self.explore(scorer, inp.question, passages, orders,
                              on_generation=ctx.stats.add_generation)
        answers = [p.answer for p in passes]
        scores = score_passes(self.signal, answers, [p.mean_logprob for p in passes],
                              inp.references)
        store = PositionStore(self.params.weights_path)
        scoring_weights, _ = store.weights_for(scorer.model_id, k)
        weights, source = store.weights_for(ctx.generator.model_id, k)
        utilities = estimate_utilities(orders, scores, scoring_weights, self.params.ridge_lambda)
        new_order = place(utilities, orders, weights)
        return MoiOutput(
            passages=[passages[p] for p in new_order],
            utilities=[Utility(id=p.id, utility=None if np.isnan(u) else float(u))
                       for p, u in zip(passages, utilities, strict=True)],
            trials=[Trial(order=[passages[i].id for i in p.order], answer=p.answer, score=s,
                          mean_logprob=p.mean_logprob, tokens_in=p.tokens_in,
                          cached_tokens=p.cached_tokens)
                    for p, s in zip(passes, scores, strict=True)],
            slot_weights=[float(w) for w in weights],
            weights_source=source,
            vote_answer=majority_answer(answers) or UNKNOWN,
            voted=self.params.mode == "vote",
            tokens_prompted=sum(p.tokens_in for p in passes),
            tokens_evaluated=sum(p.tokens_in - p.cached_tokens for p in passes),
        )

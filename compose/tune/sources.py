"""Turn each training file, in its own published layout, into gold cases for the modules it
serves (the files are described in ``../shared/data/train/README.md``).

Passages are shaped as the benchmark loaders shape them at run time (title, sentences joined by
one space, cut to what the module shows), and reading cases mix the gold passage with
distractors from the same article or question, so the reader learns to pick the passage
rather than to copy the only one it is given. Every case is a pure function of its row: the
shuffles are seeded from the row id, so the same files always give the same cases.

Usage::

    for case in SOURCES["squad"].cases(Path("../shared/data/train/squad1.1_dev_explorer.jsonl")):
        ...
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from compose.modules.answer import AnswerParams
from compose.text import UNKNOWN, normalize_answer
from compose.tune.example import ModuleCase

PASSAGE_CHARS = 650  # under answer's 700-character cut, so the gold text is never cut off
DEFAULT_READ = AnswerParams().max_passages
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def read_length(rng: random.Random, reads: Sequence[int]) -> int:
    """How many passages a multi-hop reading case shows. A single choice draws nothing, so
    the default recipe's cases stay byte-identical to those the shipped adapter learned."""
    return reads[0] if len(reads) == 1 else rng.choice(reads)


def row_rng(key: str) -> random.Random:
    return random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, json.loads(line)


def window(text: str, start: int, limit: int = PASSAGE_CHARS) -> str:
    """Whole sentences around character ``start``, grown while they fit in ``limit``."""
    sentences, spans, at = _SENTENCE_END.split(text), [], 0
    for sentence in sentences:
        at = text.find(sentence, at)
        spans.append((at, at + len(sentence)))
        at += len(sentence)
    hit = next((i for i, (a, b) in enumerate(spans) if a <= start < b), 0)
    lo = hi = hit
    while True:
        grown = False
        for cand in (hi + 1, lo - 1):
            if 0 <= cand < len(spans):
                a, b = spans[min(lo, cand)][0], spans[max(hi, cand)][1]
                if b - a <= limit:
                    lo, hi, grown = min(lo, cand), max(hi, cand), True
        if not grown:
            break
    piece = text[spans[lo][0]:spans[hi][1]]
    return piece if len(piece) <= limit else piece[:limit]


@lru_cache(maxsize=65536)
def padded_normal_form(text: str) -> str:
    return f" {normalize_answer(text)} "


def contains(text: str, answer: str) -> bool:
    """Whether the answer occurs in the text as whole words, after SQuAD normalisation."""
    target = normalize_answer(answer)
    return bool(target) and f" {target} " in padded_normal_form(text)


def passage(pid: str, title: str, text: str) -> dict[str, str]:
    return {"id": pid, "title": title, "text": text}


def reading_case(source: str, question: str, gold: list[dict[str, str]],
                 distractors: list[dict[str, str]],
                 answer: str, rng: random.Random, n_passages: int) -> ModuleCase:
    """An ``answer`` case: gold passages at random positions among distractors. More than
    the module's default five passages are read with ``max_passages`` raised to match."""
    shown = gold + distractors[: max(0, n_passages - len(gold))]
    rng.shuffle(shown)
    cited = [p["id"] for p in gold] if answer != UNKNOWN else []
    params = {"max_passages": len(shown)} if len(shown) > DEFAULT_READ else {}
    return ModuleCase(module="answer", params=params,
                      input={"question": question, "passages": shown},
                      output={"answer": answer, "citations": cited}, source=source,
                      group=source)


def verify_case(source: str, question: str, answer: str, passages: list[dict[str, str]],
                grounded: bool) -> ModuleCase:
    reason = (f"A passage states that the answer is {answer}." if grounded else
              f"No passage states that {answer} answers the question.")
    return ModuleCase(module="verify", input={"question": question, "answer": answer,
                                              "passages": passages},
                      output={"grounded": grounded, "reason": reason[:120]},
                      source=source, group=source, variant="pos" if grounded else "neg")


def decompose_case(source: str, question: str, steps: list[str]) -> ModuleCase:
    return ModuleCase(module="decompose", params={"max_sub_questions": 3},
                      input={"question": question}, output={"sub_questions": steps},
                      source=source, group=source)


def majority_answer(answers: list[dict[str, Any]]) -> str:
    counts = Counter(a["text"].strip() for a in answers if a["text"].strip())
    return min(counts, key=lambda text: (-counts[text], len(text))) if counts else ""


def squad_cases(path: Path) -> Iterator[ModuleCase]:
    """SQuAD 1.1: reading among paragraphs of the same article; a single-fact question is
    its own one-step plan; a verify positive and a negative (another question's answer
    from the same paragraph, which the passage mentions but not as this answer)."""
    rows = list(read_rows(path))
    contexts: dict[str, list[str]] = defaultdict(list)
    answers_of: dict[str, list[str]] = defaultdict(list)
    for _, row in rows:
        if row["context"] not in contexts[row["title"]]:
            contexts[row["title"]].append(row["context"])
        answers_of[row["context"]].append(majority_answer(row["answers"]))
    leading = {text: window(text, 0) for texts in contexts.values() for text in texts}
    for number, row in rows:
        answer, source = majority_answer(row["answers"]), f"{path.name}:{number}"
        rng = row_rng(row["id"])
        start = row["context"].find(answer)
        if not answer or start < 0 or len(answer) > 80:
            continue
        title = row["title"].replace("_", " ")
        index = contexts[row["title"]].index(row["context"])
        gold = passage(f"{row['title']}#{index}", title, window(row["context"], start))
        others = [passage(f"{row['title']}#{i}", title, leading[text])
                  for i, text in enumerate(contexts[row["title"]])
                  if i != index and not contains(text, answer)]
        rng.shuffle(others)
        yield reading_case(source, row["question"], [gold], others, answer, rng,
                           rng.choice([3, 4, 5, 5]))
        shown = [gold, *others[: rng.choice([0, 1, 2])]]
        rng.shuffle(shown)
        yield verify_case(source, row["question"], answer, shown, True)
        wrong = [a for a in answers_of[row["context"]] if a and not contains(a, answer)
                 and not contains(answer, a)]
        if wrong:
            yield verify_case(source, row["question"], rng.choice(wrong), shown, False)
        if rng.random() < 0.1:
            yield decompose_case(source, row["question"], [row["question"]])


def squad_unanswerable_cases(path: Path) -> Iterator[ModuleCase]:
    """SQuAD 2.0 unanswerable: the article's paragraph does not hold the answer, so the
    reader must say "unknown"."""
    rows = list(read_rows(path))
    contexts: dict[str, list[str]] = defaultdict(list)
    for _, row in rows:
        if row["context"] not in contexts[row["title"]]:
            contexts[row["title"]].append(row["context"])
    for number, row in rows:
        rng, title = row_rng(row["id"]), row["title"].replace("_", " ")
        shown = [passage(f"{row['title']}#{i}", title, window(text, 0))
                 for i, text in enumerate(contexts[row["title"]])]
        rng.shuffle(shown)
        yield reading_case(f"{path.name}:{number}", row["question"], [], shown, UNKNOWN, rng,
                           rng.choice([2, 3, 4, 5]))


def wiki_paragraphs(context: list[list[Any]]) -> list[dict[str, str]]:
    return [passage(title, title, " ".join(s.strip() for s in sentences if s.strip()))
            for title, sentences in context]


def sub_answers(row: dict[str, Any]) -> list[tuple[str, str]] | None:
    """2Wiki's sub-question/answer pairs, with the short answer taken from the evidence
    triple whose object the MIGRES answer sentence states; None if they do not line up."""
    pairs, triples = row.get("migres_qa_pairs") or [], row.get("evidences") or []
    if not pairs or len(pairs) != len(triples):
        return None
    hops = []
    for pair, triple in zip(pairs, triples, strict=True):
        if not contains(pair["answer"], str(triple[2])):
            return None
        hops.append((pair["question"], str(triple[2])))
    return hops


def with_references(hops: list[tuple[str, str]]) -> list[str]:
    """Sub-questions with earlier answers replaced by ``#k``, as ``decompose`` writes them."""
    steps = []
    for i, (question, _) in enumerate(hops):
        for k, (_, earlier) in enumerate(hops[:i], start=1):
            question = re.sub(re.escape(earlier), f"#{k}", question, flags=re.IGNORECASE)
        steps.append(question)
    return steps


def twowiki_cases(path: Path, reads: Sequence[int] = (DEFAULT_READ,)
                  ) -> Iterator[ModuleCase]:
    """2WikiMultiHopQA: multi-hop reading among the row's own ten paragraphs; per hop,
    reading and verification of the sub-question; the plan with ``#k`` references for
    compositional questions, where each hop feeds the next."""
    for number, row in read_rows(path):
        source, rng = f"{path.name}:{number}", row_rng(row["_id"])
        paragraphs = wiki_paragraphs(row["context"])
        gold_titles = {title for title, _ in row["supporting_facts"]}
        gold = [p for p in paragraphs if p["title"] in gold_titles]
        rest = [p for p in paragraphs if p["title"] not in gold_titles]
        rng.shuffle(rest)
        for p in paragraphs:
            p["text"] = p["text"][:PASSAGE_CHARS]
        readable = normalize_answer(row["answer"]) in ("yes", "no") or contains(
            " ".join(p["text"] for p in gold), row["answer"])
        if 0 < len(gold) <= 4 and len(row["answer"]) <= 80 and readable:
            yield reading_case(source, row["question"], gold, rest, row["answer"], rng,
                               read_length(rng, reads))
        hops = sub_answers(row)
        if not hops:
            continue
        answers = [a for _, a in hops]
        for question, answer in hops:
            support = [p for p in gold if contains(p["text"], answer)][:1]
            if not support:
                continue
            yield reading_case(source, question, support, rest, answer, rng,
                               rng.choice([3, 4, 5]))
            shown = [*support, *rest[:1]]
            rng.shuffle(shown)
            yield verify_case(source, question, answer, shown, True)
            wrong = [a for a in answers if a != answer] or [p["title"] for p in rest[:1]]
            yield verify_case(source, question, wrong[0], shown, False)
        if row["type"] == "compositional" and len(hops) <= 3:
            yield decompose_case(source, row["question"], with_references(hops))
            steps = with_references(hops)
            evidence = [{"question": steps[0], "answer": answers[0]}]
            yield ModuleCase(module="retrieval_decision", input={
                "question": hops[-1][0], "evidence": evidence}, output={
                "retrieve": True, "reason": "The facts do not answer this question."},
                source=source, group=source)
            yield ModuleCase(module="retrieval_decision", input={
                "question": hops[0][0], "evidence": evidence}, output={
                "retrieve": False, "reason": f"The facts already give {answers[0]}."},
                source=source, group=source, variant="answered")


def musique_cases(path: Path, reads: Sequence[int] = (DEFAULT_READ,)
                  ) -> Iterator[ModuleCase]:
    """MuSiQue: its decompositions (already written with ``#k``), and reading of the
    answerable questions among their twenty paragraphs."""
    for number, row in read_rows(path):
        source, rng = f"{path.name}:{number}", row_rng(row["id"])
        steps = [step["question"] for step in row["question_decomposition"]]
        if len(steps) <= 3:
            yield decompose_case(source, row["question"], steps)
        if not row.get("answerable", True):
            continue
        paragraphs = [passage(f"{row['id']}#{p['idx']}", p["title"],
                              p["paragraph_text"][:PASSAGE_CHARS]) for p in row["paragraphs"]]
        flags = [raw["is_supporting"] for raw in row["paragraphs"]]
        gold = [p for p, flag in zip(paragraphs, flags, strict=True) if flag]
        rest = [p for p, flag in zip(paragraphs, flags, strict=True) if not flag]
        rng.shuffle(rest)
        if 0 < len(gold) <= 4 and contains(" ".join(p["text"] for p in gold), row["answer"]):
            yield reading_case(source, row["question"], gold, rest, row["answer"], rng,
                               read_length(rng, reads))


def hotpot_evidence_cases(path: Path, reads: Sequence[int] = (DEFAULT_READ,)
                          ) -> Iterator[ModuleCase]:
    """HotpotQA train with gold evidence sentences: each sentence a passage, distractors
    are other rows' sentences; yes/no comparison answers cite every evidence sentence."""
    rows = list(read_rows(path))
    pool = [(number, s) for number, row in rows for s in row["evidence"]]
    for number, row in rows:
        source, rng = f"{path.name}:{number}", row_rng(f"{path.name}:{number}")
        answer = row["answer"].strip()
        if not answer or len(answer) > 80:
            continue
        gold = [passage(f"{number}#{i}", "", s[:PASSAGE_CHARS])
                for i, s in enumerate(row["evidence"])]
        if len(gold) > 4:
            continue
        if normalize_answer(answer) not in ("yes", "no"):
            cited = [p for p in gold if contains(p["text"], answer)]
            if not cited:
                continue
        distractors = [passage(f"{n}#x{i}", "", s[:PASSAGE_CHARS])
                       for i, (n, s) in enumerate(rng.sample(pool, 8)) if n != number]
        yield reading_case(source, row["question"], gold, distractors, answer, rng,
                           read_length(rng, reads))


def strategyqa_cases(path: Path) -> Iterator[ModuleCase]:
    """StrategyQA: implicit multi-step plans with ``#k`` references."""
    for number, row in read_rows(path):
        if 1 <= len(row["decomposition"]) <= 3:
            yield decompose_case(f"{path.name}:{number}", row["question"],
                                 row["decomposition"])


@dataclass(frozen=True)
class Source:
    """One training file and the function that reads its layout."""

    file: str
    cases: Callable[..., Iterator[ModuleCase]]
    serves: str
    multi_hop: bool = False  # its reading cases take the recipe's ``multi_hop_reads``


SOURCES: dict[str, Source] = {
    "squad": Source("squad1.1_dev_explorer.jsonl", squad_cases,
                    "answer (reading), verify, decompose (one-step plans)"),
    "squad_unanswerable": Source("squad2.0_dev_explorer_not_in_v1.1.jsonl",
                                 squad_unanswerable_cases, "answer (abstention)"),
    "twowiki": Source("2wikimultihopqa_train_migres.jsonl", twowiki_cases,
                      "answer (multi-hop and per hop), verify, decompose, retrieval_decision",
                      multi_hop=True),
    "musique": Source("musique_full_train_100.jsonl", musique_cases, "decompose, answer",
                      multi_hop=True),
    "hotpotqa_evidence": Source("hotpotqa_train_evidence_ecm.jsonl", hotpot_evidence_cases,
                                "answer (multi-hop reading, yes/no)", multi_hop=True),
    "strategyqa": Source("strategyqa_train_decompositions.jsonl", strategyqa_cases,
                         "decompose"),
}

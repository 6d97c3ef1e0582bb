"""Loaders that turn the published QA benchmark files into a pooled corpus plus questions.

Multi-hop benchmarks ship each question with its own handful of candidate paragraphs. Handing
the retriever only those would make retrieval trivial, so every loader here uses the pooled
distractor setting: the paragraphs of all rows of a file form one de-duplicated corpus, and each
question must find its gold paragraphs among thousands. Passage ids are content hashes, so the
same paragraph gets the same id on every load and an index built once stays valid.

A run names its benchmark as ``NAME:PATH``; the loaders are a registry, so an installed package
adds one through the ``composerag.benchmarks`` entry-point group (or ``register_benchmark``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from compose.corpus import BenchmarkData, Passage, QAItem, read_jsonl
from compose.plugins import Registry

BenchmarkLoader = Callable[[str | Path], BenchmarkData]

BENCHMARKS: Registry[BenchmarkLoader] = Registry("benchmark", "composerag.benchmarks")


def register_benchmark(name: str) -> Callable[[BenchmarkLoader], BenchmarkLoader]:
    """Decorator: a loader from a benchmark file's path, named in specs as ``name:PATH``."""
    return BENCHMARKS.register(name)


class _Pool:
    """A first-seen-ordered corpus that de-duplicates paragraphs by (title, text)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._ids: dict[tuple[str, str], str] = {}
        self.passages: list[Passage] = []

    def add(self, title: str, text: str) -> str:
        """Add a paragraph unless already pooled; return its stable id either way."""
        title, text = title.strip(), text.strip()
        key = (title, text)
        if key not in self._ids:
            digest = hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()[:12]
            self._ids[key] = f"{self.prefix}-{digest}"
            self.passages.append(Passage(id=self._ids[key], title=title, text=text))
        return self._ids[key]


def _unique(values: Iterable[str]) -> list[str]:
    """Strip and de-duplicate strings, keeping first-seen order and dropping blanks."""
    seen: dict[str, None] = {}
    for value in values:
        if value and value.strip():
            seen.setdefault(value.strip(), None)
    return list(seen)


def _load_wiki_context(
    path: str | Path, name: str, prefix: str, meta_keys: tuple[str, ...]
) -> BenchmarkData:
    """Shared loader for the HotpotQA-style ``context: [[title, [sentences]]]`` format.

    HotpotQA sentences carry a leading space and 2WikiMultiHopQA ones do not, so sentences are
    stripped and joined with one space for both, giving the same text shape across benchmarks.
    """
    pool = _Pool(prefix)
    questions = []
    for row in read_jsonl(path):
        ids_by_title: dict[str, str] = {}
        for title, sentences in row["context"]:
            text = " ".join(s.strip() for s in sentences if s.strip())
            ids_by_title.setdefault(title, pool.add(title, text))
        gold_titles = _unique(title for title, _ in row["supporting_facts"])
        questions.append(
            QAItem(
                id=row["_id"],
                question=row["question"],
                answers=_unique([row["answer"]]),
                gold_ids=[ids_by_title[t] for t in gold_titles if t in ids_by_title],
                meta={key: row[key] for key in meta_keys if key in row},
            )
        )
    return BenchmarkData(name=name, corpus=pool.passages, questions=questions)


@register_benchmark("hotpotqa")
def load_hotpotqa(path: str | Path) -> BenchmarkData:
    """HotpotQA (distractor dev): gold passages are those named in ``supporting_facts``."""
    return _load_wiki_context(path, "hotpotqa", "hotpotqa", ("type", "level", "supporting_facts"))


@register_benchmark("2wiki")
@register_benchmark("2wikimultihopqa")
def load_2wiki(path: str | Path) -> BenchmarkData:
    """2WikiMultiHopQA: same context format as HotpotQA, plus ``evidences`` triples in meta."""
    return _load_wiki_context(
        path, "2wikimultihopqa", "2wiki", ("type", "supporting_facts", "evidences")
    )


@register_benchmark("musique")
def load_musique(path: str | Path) -> BenchmarkData:
    """MuSiQue-Ans: gold passages are the ``is_supporting`` paragraphs; aliases count as answers."""
    pool = _Pool("musique")
    questions = []
    for row in read_jsonl(path):
        gold_ids = []
        for paragraph in row["paragraphs"]:
            pid = pool.add(paragraph["title"], paragraph["paragraph_text"])
            if paragraph.get("is_supporting"):
                gold_ids.append(pid)
        questions.append(
            QAItem(
                id=row["id"],
                question=row["question"],
                answers=_unique([row["answer"], *row.get("answer_aliases", [])]),
                gold_ids=_unique(gold_ids),
                meta={
                    "answerable": row.get("answerable", True),
                    "question_decomposition": row.get("question_decomposition", []),
                },
            )
        )
    return BenchmarkData(name="musique", corpus=pool.passages, questions=questions)


@register_benchmark("asqa")
def load_asqa(path: str | Path) -> BenchmarkData:
    """ASQA: the corpus pools the annotators' ``knowledge`` passages (title = wikipage).

    Answers are the union of all disambiguations' short answers; ``meta["qa_pairs"]`` keeps
    them per disambiguation for STR-EM. Some rows have no knowledge passages at all, so their
    ``gold_ids`` are empty, and a few knowledge entries have no content and are skipped. The
    ambiguity metrics (``compose.eval.ambiguity_metrics``) are declared for every ASQA run.
    """
    with open(path, encoding="utf-8") as handle:
        rows = json.load(handle)
    pool = _Pool("asqa")
    questions = []
    for row in rows:
        gold_ids = [
            pool.add(knowledge.get("wikipage") or "", knowledge["content"])
            for annotation in row.get("annotations") or []
            for knowledge in annotation.get("knowledge") or []
            if knowledge.get("content") and knowledge["content"].strip()
        ]
        qa_pairs = row.get("qa_pairs") or []
        questions.append(
            QAItem(
                id=str(row["id"]),
                question=row["question"],
                answers=_unique(a for pair in qa_pairs for a in pair.get("short_answers") or []),
                gold_ids=_unique(gold_ids),
                meta={
                    "qa_pairs": qa_pairs,
                    "long_answers": [
                        annotation["long_answer"]
                        for annotation in row.get("annotations") or []
                        if annotation.get("long_answer")
                    ],
                },
            )
        )
    return BenchmarkData(name="asqa", corpus=pool.passages, questions=questions,
                         metrics=["n_interpretations", "grounded_precision",
                                  "grounded_precision_verify", "str_em_answers"])


@register_benchmark("pubmedqa")
def load_pubmedqa(path: str | Path) -> BenchmarkData:
    """PubMedQA PQA-L: one passage per abstract (its CONTEXTS joined); answer is yes/no/maybe."""
    with open(path, encoding="utf-8") as handle:
        rows = json.load(handle)
    pool = _Pool("pubmedqa")
    questions = []
    for pmid, row in rows.items():
        pid = pool.add(f"PMID {pmid}", " ".join(c.strip() for c in row["CONTEXTS"]))
        questions.append(
            QAItem(
                id=str(pmid),
                question=row["QUESTION"],
                answers=[row["final_decision"]],
                gold_ids=[pid],
                meta={
                    "long_answer": row.get("LONG_ANSWER", ""),
                    "labels": row.get("LABELS", []),
                    "meshes": row.get("MESHES", []),
                    "year": row.get("YEAR"),
                },
            )
        )
    return BenchmarkData(name="pubmedqa", corpus=pool.passages, questions=questions,
                         metrics=["accuracy", "label_rate", "tool_calls", "agent_steps"])


def load_benchmark(spec: str) -> BenchmarkData:
    """Load ``"NAME:PATH"`` (e.g. ``"hotpotqa:../shared/data/hotpotqa/dev200.jsonl"``), or
    ``"demo"`` for the shipped demo corpus and questions."""
    if spec.strip().lower() == "demo":
        from compose.corpora.demo import load_demo

        return load_demo()
    name, sep, path = spec.partition(":")
    name = name.strip().lower()
    if not sep or not path:
        raise ValueError(f"benchmark spec must be NAME:PATH or 'demo', got {spec!r}")
    try:
        loader = BENCHMARKS.get(name)
    except KeyError as exc:
        raise ValueError(f"{exc.args[0]} (known: {', '.join(BENCHMARKS.names())})") from None
    if not Path(path).is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    return loader(path)

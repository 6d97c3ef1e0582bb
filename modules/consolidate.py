"""VERDICT's consolidation: merge readings that say the same thing, drop lone outliers.

Several passages often yield the same reading in different words, and a reading backed by a
single passage is more often a misreading than a real interpretation. So the readings are
embedded ("question + answer", unit-normalised, with the project's encoder) and clustered
with scikit-learn's HDBSCAN (cosine distance, min cluster size 2, min samples 2); each cluster
keeps the member nearest its centre, and noise points are dropped - unless everything is
noise, in which case every reading is kept (there is no consensus to prefer). Two choices
the method leaves open are params: HDBSCAN may return a single cluster (the usual case of one
well-supported reading plus outliers, which it otherwise calls all noise), and a cluster
member that is not similar to the rest in absolute terms (mean cosine to the others below
``min_similarity``) counts as noise, since density alone has no scale: on a handful of points
HDBSCAN groups even mutually orthogonal readings, or folds an outlier into a cluster. The
k-means variant picks k by silhouette score (cosine); clusters smaller than the minimum size
count as noise. No LLM call.

Usage::

    from compose.modules.consolidate import Consolidate
    out = Consolidate(method="hdbscan")({"interpretations": [...]})
    out.interpretations, out.clusters, out.noise
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from compose.module import Module
from compose.modules.interpretation import Interpretation
from compose.registry import register
from compose.retrieval.encoder import DEFAULT_ENCODER, embed
from compose.runtime import ModuleContext

if TYPE_CHECKING:
    import numpy as np

NOISE = -1


class ConsolidateInput(BaseModel):
    interpretations: list[Interpretation] = Field(default_factory=list)


class ConsolidateOutput(BaseModel):
    interpretations: list[Interpretation] = Field(default_factory=list)
    clusters: int = Field(default=0, description="Clusters found (0 when all were noise).")
    noise: int = Field(default=0, description="Readings that fell in no cluster.")


class ConsolidateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["hdbscan", "kmeans"] = "hdbscan"
    embed_text: Literal["question_answer", "answer"] = Field(
        default="question_answer",
        description="What is embedded per reading. 'answer' suits a small generator that "
        "repeats the ambiguous question as every reading: the shared words would otherwise "
        "make different answers look alike.")
    min_cluster_size: int = Field(default=2, ge=2)
    min_samples: int = Field(default=2, ge=1)
    allow_single_cluster: bool = Field(
        default=True,
        description="HDBSCAN: let one cluster hold the consensus. Off, a single group of "
        "agreeing readings plus outliers comes out as all noise (HDBSCAN wants a split).")
    max_clusters: int = Field(default=8, ge=2, description="k-means: largest k tried.")
    min_similarity: float = Field(
        default=0.65, ge=-1.0, le=1.0,
        description="A cluster member whose mean cosine similarity to the other members is "
        "below this counts as noise (density alone has no absolute scale).")
    encoder: str = DEFAULT_ENCODER


class Clustering(BaseModel):
    """Which inputs survive, each with how many members its cluster had."""

    keep: list[int]
    support: list[int]
    clusters: int
    noise: int


def cluster_labels(vectors: np.ndarray, params: ConsolidateParams) -> np.ndarray:
    """One label per row; ``NOISE`` marks rows in no cluster (HDBSCAN only)."""
    # Imported on use, numpy too: scikit-learn takes seconds to import, numpy a tenth of one,
    # and this file is imported whenever a graph names this module, even just to validate it.
    import numpy as np
    from sklearn.cluster import HDBSCAN, KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import silhouette_score

    n = len(vectors)
    if n < max(params.min_cluster_size, params.min_samples):
        return np.full(n, NOISE)
    if params.method == "hdbscan":
        return HDBSCAN(min_cluster_size=params.min_cluster_size,
                       min_samples=params.min_samples, metric="cosine",
                       allow_single_cluster=params.allow_single_cluster,
                       copy=True).fit_predict(vectors)
    if n < 3:  # silhouette needs 2 <= k <= n - 1: two readings are one cluster or none
        return np.zeros(n, dtype=int)
    best_score, best = None, np.zeros(n, dtype=int)  # one cluster if all rows are identical
    for k in range(2, min(params.max_clusters, n - 1) + 1):
        with warnings.catch_warnings():  # repeated readings are expected, not a problem
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(vectors)
        if len(set(labels)) < 2:  # all rows identical
            continue
        score = silhouette_score(vectors, labels, metric="cosine")
        if best_score is None or score > best_score:
            best_score, best = score, labels
    sizes = np.bincount(best)
    return np.where(sizes[best] < params.min_cluster_size, NOISE, best)


def prune_loose_members(vectors: np.ndarray, labels: np.ndarray,
                        params: ConsolidateParams) -> np.ndarray:
    """Turn into noise, one at a time, the cluster member least similar to the others while
    its mean cosine similarity to them is below ``min_similarity``; a cluster left smaller than
    the minimum size becomes noise altogether."""
    import numpy as np

    labels = labels.copy()
    for cluster in set(labels.tolist()) - {NOISE}:
        members = np.flatnonzero(labels == cluster)
        while len(members) >= params.min_cluster_size:
            similarity = vectors[members] @ vectors[members].T
            to_others = (similarity.sum(axis=1) - np.diag(similarity)) / (len(members) - 1)
            if to_others.min() >= params.min_similarity:
                break
            labels[members[np.argmin(to_others)]] = NOISE
            members = np.flatnonzero(labels == cluster)
        if len(members) < params.min_cluster_size:
            labels[members] = NOISE
    return labels


def consolidate_vectors(vectors: np.ndarray, params: ConsolidateParams) -> Clustering:
    """Pick one representative per cluster: the member nearest the (normalised) centroid.

    Representatives come out ordered by cluster size, then by first member's position, so the
    best-supported reading (and, among equals, the best-ranked passage) comes first.
    """
    import numpy as np

    labels = prune_loose_members(vectors, cluster_labels(vectors, params), params)
    clusters = sorted({int(label) for label in labels} - {NOISE},
                      key=lambda c: (-int(np.sum(labels == c)), int(np.argmax(labels == c))))
    noise = int(np.sum(labels == NOISE))
    if not clusters:
        return Clustering(keep=list(range(len(vectors))), support=[1] * len(vectors),
                          clusters=0, noise=noise)
    keep, support = [], []
    for cluster in clusters:
        members = np.flatnonzero(labels == cluster)
        centre = vectors[members].mean(axis=0)
        centre /= np.linalg.norm(centre) or 1.0
        keep.append(int(members[np.argmax(vectors[members] @ centre)]))
        support.append(len(members))
    return Clustering(keep=keep, support=support, clusters=len(clusters), noise=noise)


@register
class Consolidate(Module[ConsolidateInput, ConsolidateOutput, ConsolidateParams]):
    name = "consolidate"
    purpose = ("Cluster readings by meaning (HDBSCAN or k-means + silhouette) and keep one "
               "per cluster; drop noise unless all is noise.")

    def run(self, inp: ConsolidateInput, ctx: ModuleContext) -> ConsolidateOutput:
        items = inp.interpretations
        if not items:
            return ConsolidateOutput()
        texts = [i.answer if self.params.embed_text == "answer" else f"{i.question} {i.answer}"
                 for i in items]
        vectors = embed(texts, self.params.encoder)
        result = consolidate_vectors(vectors, self.params)
        kept = [items[i].model_copy(update={"support": size})
                for i, size in zip(result.keep, result.support, strict=True)]
        return ConsolidateOutput(interpretations=kept, clusters=result.clusters,
                                 noise=result.noise)

"""Fitted slot weights, stored per generator model and number of slots.

``composerag moi fit-positions`` writes them; the ``moi_rerank`` module reads them. A model
without fitted weights for that many slots gets ``default_weights`` (a primacy bias), and the
module's output says which was used.

The store is one JSON file (default ``~/.cache/composerag/moi_positions.json``)::

    {"gguf:smollm2.gguf": {"5": {"weights": [...], "questions": 200, "signal": "logprob",
                                "dataset": "hotpotqa:..."}}}

Usage::

    store = PositionStore()
    store.save("gguf:smollm2.gguf", weights, questions=200, signal="logprob", dataset="...")
    weights, source = store.weights_for("gguf:smollm2.gguf", k=5)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from compose.config import DEFAULT_HOME

DEFAULT_STORE = DEFAULT_HOME / "moi_positions.json"


def default_weights(k: int) -> np.ndarray:
    """The fallback without fitted weights: a primacy bias, falling linearly from 1 in the
    first slot to 0 in the last (the commonest finding for small generators). With it the
    highest-utility passage goes first."""
    return np.linspace(1.0, 0.0, k) if k > 1 else np.ones(1)


class PositionStore:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path or DEFAULT_STORE).expanduser()

    def load(self) -> dict:
        if not self.path.is_file():
            return {}
        return json.loads(self.path.read_text(encoding="utf-8"))

    def weights_for(self, model_id: str, k: int) -> tuple[np.ndarray, str]:
        """(weights, "fitted" or "default") for ``k`` slots of ``model_id``."""
        entry = self.load().get(model_id, {}).get(str(k))
        if entry is None:
            return default_weights(k), "default"
        return np.asarray(entry["weights"], dtype=float), "fitted"

    def save(self, model_id: str, weights: np.ndarray, **about: object) -> None:
        """Add or replace one model's weights; written atomically (temp file + rename)."""
        data = self.load()
        data.setdefault(model_id, {})[str(len(weights))] = {
            "weights": [round(float(w), 6) for w in weights], **about}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

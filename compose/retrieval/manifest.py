"""The manifest of an index directory: what the index was built from and with.

It lives apart from the building code so that deciding whether a directory already is an
index (before anything is written into it) does not import FAISS and BM25.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

FORMAT_VERSION = 1
IndexType = Literal["flat", "hnsw"]


class IndexManifest(BaseModel):
    format_version: int = FORMAT_VERSION
    encoder: str
    dimension: int
    index_type: IndexType
    hnsw_m: int | None = None
    corpus_hash: str
    count: int
    build_seconds: float = 0.0


def read_manifest(index_dir: str | Path) -> IndexManifest:
    path = Path(index_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{index_dir} is not an index directory (no manifest.json); build one with "
            "`composerag index build CORPUS DIR`"
        )
    return IndexManifest.model_validate_json(path.read_text())

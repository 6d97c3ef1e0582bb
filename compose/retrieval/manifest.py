"""The manifest of an index directory: what the index was built from and with.

It lives apart from the building code so that deciding whether a directory already is an
index (before anything is written into it) does not import FAISS and BM25.

Format 2 adds ``files``: the sha256 of every file the index consists of, so that opening it
can tell a file changed, truncated or copied in from another index (see
:mod:`compose.retrieval.integrity`). A format-1 manifest still parses, so that a build may
replace such an index, but opening one is refused with a rebuild message
(:func:`check_format`): its files cannot be verified, and an index that silently answers from
another corpus is the failure this format exists to prevent. Indexes kept by
:func:`compose.retrieval.store.ensure_index` are rebuilt without asking.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from compose.corpus import describe_validation
from compose.retrieval.errors import IndexDamagedError

FORMAT_VERSION = 2
MANIFEST_FILE = "manifest.json"
PASSAGES_FILE = "passages.jsonl"
DENSE_FILE = "dense.faiss"
BM25_DIR = "bm25"
IndexType = Literal["flat", "hnsw"]
# Only these names may appear in ``files``: a manifest must never make opening read (or hash)
# a file outside the index directory, such as ``../../dev/zero``.
FILE_NAME = re.compile(rf"{re.escape(PASSAGES_FILE)}|{re.escape(DENSE_FILE)}|"
                       rf"{BM25_DIR}/[A-Za-z0-9_-][A-Za-z0-9._-]*")
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class IndexManifest(BaseModel):
    """Unknown keys and coerced types are refused: the manifest is written by a build, so a
    key whose name was damaged or a value of another type is an edit, not a dialect."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format_version: int = FORMAT_VERSION
    encoder: str = Field(min_length=1)
    dimension: int = Field(ge=1)
    index_type: IndexType
    hnsw_m: int | None = Field(default=None, ge=1)
    corpus_hash: str = Field(pattern=r"^[0-9a-f]{16}$")
    count: int = Field(ge=1)
    build_seconds: float = 0.0
    files: dict[str, Sha256] = Field(
        default_factory=dict,
        description="sha256 of each file of the index, by path relative to the directory.")

    @model_validator(mode="after")
    def files_cover_the_index(self) -> IndexManifest:
        unexpected = [name for name in self.files if not FILE_NAME.fullmatch(name)]
        if unexpected:
            raise ValueError(f"files names paths that are not index files: {unexpected}")
        if self.format_version == FORMAT_VERSION:
            bm25 = [name for name in self.files if name.startswith(f"{BM25_DIR}/")]
            missing = [name for name in (PASSAGES_FILE, DENSE_FILE) if name not in self.files]
            if missing or not bm25:
                raise ValueError(f"files records no hash for {missing or [BM25_DIR + '/']}")
        if (self.index_type == "hnsw") != (self.hnsw_m is not None):
            raise ValueError(f"hnsw_m {self.hnsw_m} does not fit index_type {self.index_type!r}")
        return self


def read_manifest(index_dir: str | Path) -> IndexManifest:
    """The parsed manifest. ``FileNotFoundError`` when ``index_dir`` is no index at all;
    :class:`IndexDamagedError` when it holds index files but no manifest, or a manifest that
    does not parse."""
    path = Path(index_dir) / MANIFEST_FILE
    if not path.is_file():
        others = [name for name in (PASSAGES_FILE, DENSE_FILE, BM25_DIR)
                  if (Path(index_dir) / name).exists()]
        if others:
            raise IndexDamagedError(index_dir, MANIFEST_FILE,
                                    f"is missing (the directory holds {', '.join(others)})")
        raise FileNotFoundError(
            f"{index_dir} is not an index directory (no {MANIFEST_FILE}); build one with "
            "`composerag index build CORPUS DIR`"
        )
    try:
        return IndexManifest.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise IndexDamagedError(index_dir, MANIFEST_FILE,
                                f"is malformed ({describe_validation(error)})") from None
    except OSError as error:
        raise IndexDamagedError(index_dir, MANIFEST_FILE,
                                f"cannot be read ({error.strerror})") from None


def check_format(manifest: IndexManifest, index_dir: str | Path) -> None:
    """Refuse a manifest of another format version, saying which way it differs."""
    version = manifest.format_version
    if version < FORMAT_VERSION:
        raise IndexDamagedError(
            index_dir, MANIFEST_FILE,
            f"is format {version}, written by an older composerag: it records no file hashes, "
            "so the index cannot be verified")
    if version > FORMAT_VERSION:
        raise IndexDamagedError(
            index_dir, MANIFEST_FILE,
            f"is format {version}; this composerag reads format {FORMAT_VERSION}")

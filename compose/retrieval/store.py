"""Indexes kept under the composerag home, found again by corpus content hash.

``ensure_index`` is what lets ``composerag run`` and ``composerag eval`` build an index on
first use and reuse it afterwards, rebuilding only when the corpus (or encoder) changed. An
index kept here is a cache of its corpus, so one that is damaged or of an older format is
rebuilt with a note rather than refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from compose.config import DEFAULT_HOME
from compose.corpus import Passage, corpus_hash
from compose.retrieval.encoder import DEFAULT_ENCODER
from compose.retrieval.errors import IndexDamagedError
from compose.retrieval.integrity import verify_files
from compose.retrieval.manifest import check_format, read_manifest

if TYPE_CHECKING:
    from compose.retrieval.manifest import IndexType

INDEX_HOME = DEFAULT_HOME / "indexes"


def ensure_index(
    passages: list[Passage],
    name: str,
    *,
    root: str | Path | None = None,
    encoder: str = DEFAULT_ENCODER,
    index_type: IndexType = "flat",
    show_progress: bool = True,
) -> Path:
    digest = corpus_hash(passages)
    path = Path(root or INDEX_HOME).expanduser() / f"{name}-{digest}-{index_type}"
    if (path / "manifest.json").is_file():
        try:
            manifest = read_manifest(path)
            check_format(manifest, path)
            verify_files(path, manifest)
        except IndexDamagedError as damage:
            from rich.console import Console

            Console(stderr=True).print(
                f"composerag: index {path}: {damage.file} {damage.reason}; rebuilding it",
                markup=False, highlight=False)
        else:
            if manifest.corpus_hash == digest and manifest.encoder == encoder:
                return path
    # Only a build needs the index code here: it imports numpy, FAISS and bm25s (about 0.4 s),
    # which a run that finds its index loads when it opens it, on the thread that loads the
    # model too (``Runtime.prefetch``), not on the main thread before that thread starts.
    from rich.console import Console

    from compose.retrieval.index import build_index

    if show_progress:
        Console(stderr=True).print(
            f"[bold]building the {name} index[/] ({len(passages)} passages) at {path}"
        )
    build_index(passages, path, encoder=encoder, index_type=index_type,
                show_progress=show_progress)
    return path

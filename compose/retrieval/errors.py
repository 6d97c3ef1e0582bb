"""The one error an index directory raises when it cannot be trusted as it is.

A retrieval index fails quietly when it is damaged: a FAISS file copied in from another index
of the same size answers every query with the other corpus's passages, and nothing downstream
can tell. So every way an index directory can disagree with itself (a file missing, changed,
truncated or swapped; a manifest malformed, from another format, or naming an encoder this
process must not load) is one :class:`IndexDamagedError`, naming the file and the command
that fixes it. There is no repair: the files are derived from the corpus, so rebuilding is
the fix.
"""

from __future__ import annotations

from pathlib import Path


def rebuild_command(index_dir: str | Path) -> str:
    """What the user runs to replace the index (CORPUS: the JSONL it was built from)."""
    return f"composerag index build CORPUS {index_dir}"


class IndexDamagedError(ValueError):
    """An index directory whose files disagree with its manifest or with each other."""

    def __init__(self, index_dir: str | Path, file: str, reason: str) -> None:
        self.index_dir = Path(index_dir)
        self.file = file
        self.reason = reason
        super().__init__(
            f"index {index_dir} is damaged: {file} {reason}. Rebuild it with "
            f"`{rebuild_command(index_dir)}` (CORPUS: the JSONL it was built from)"
        )

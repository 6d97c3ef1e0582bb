"""The one writer of evaluation records (and, beside them, of their traces).

Each record is appended as one JSON line and fsynced before the next question starts, so a
killed run loses at most the question in flight and a resume finds every finished one
(``compose.eval.results_file`` reads the file back). A question's trace, when kept, goes to
``OUT.traces.jsonl`` first, flushed to the operating system: it is a debugging aid, not worth
an fsync per question, and the traces file is created only when there is a trace to write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from compose.eval.record import EvalRecord


def json_line(data: dict[str, Any]) -> str:
    """One JSONL line, non-ASCII text kept readable."""
    return json.dumps(data, ensure_ascii=False) + "\n"


class ResultsWriter:
    """Appends records to ``out`` and, with ``traces``, each record's trace to that file;
    the caller holds the results file's lock."""

    def __init__(self, out: Path, traces: Path | None = None) -> None:
        self.out = out
        self.traces = traces
        self._records: IO[str] | None = None
        self._traces: IO[str] | None = None

    def __enter__(self) -> ResultsWriter:
        self._records = open(self.out, "a", encoding="utf-8")  # noqa: SIM115 (closed in __exit__)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for handle in (self._traces, self._records):
            if handle is not None:
                handle.close()
        self._records = self._traces = None

    def write(self, record: EvalRecord, trace: list[dict[str, Any]]) -> None:
        """Write one question's trace (when traces are kept), then its record, durably."""
        if self._records is None:
            raise RuntimeError("ResultsWriter.write outside its `with` block")
        if self.traces is not None:
            if self._traces is None:
                self._traces = open(self.traces, "a", encoding="utf-8")  # noqa: SIM115
            self._traces.write(json_line({"id": record.id, "question": record.question,
                                          "trace": trace}))
            self._traces.flush()
        self._records.write(json_line(record.to_json()))
        self._records.flush()
        os.fsync(self._records.fileno())

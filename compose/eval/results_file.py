"""The evaluation results file: one JSON record per line, written by one run at a time.

It is the only copy of hours of model time, so it is guarded at both ends. A run holds an
exclusive ``flock`` on ``OUT.lock`` (with its PID in it) for as long as it writes: two runs
appending to one file at once would each redo the other's questions and duplicate records.
Reading never stops at a bad line: each line is decoded (UTF-8, then JSON) on its own, a
damaged line is reported with its number and skipped, and every intact record after it is
kept. Only the last line may be cut, and only when it has no newline (the run was killed
while writing it, possibly inside a multi-byte character): new records would be glued onto
it otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from compose.pid_lock import pid_lock

err = Console(stderr=True)


class ResultsLockedError(RuntimeError):
    """Another process is writing the same results file."""


class ResultsFileError(ValueError):
    """The file named as results holds lines but not one evaluation record."""


@dataclass(frozen=True)
class DamagedLine:
    number: int
    reason: str


@dataclass
class ResultsScan:
    """What a results file holds: its intact records, the damaged lines skipped (left in the
    file), the torn last line (to be cut) and how many leading bytes to keep."""

    records: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[DamagedLine] = field(default_factory=list)
    torn: DamagedLine | None = None
    keep_bytes: int = 0


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


@contextmanager
def results_lock(out: Path) -> Iterator[None]:
    """Hold the results file ``out`` for one writer, or raise :class:`ResultsLockedError`
    naming the holder's PID. The kernel drops the lock when the process ends however it ends;
    the lock file itself stays (removing it would let two writers lock different files)."""
    path = lock_path(out)
    with pid_lock(path, lambda holder: ResultsLockedError(
            f"{out} is being written by another evaluation (PID {holder}, lock {path}); "
            "wait for it to finish, or choose another --out")):
        yield


def parse_line(raw: bytes) -> dict[str, Any] | str:
    """The record on one line, or why there is none."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start + 1}: {exc.reason}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"invalid JSON at column {exc.colno}: {exc.msg}"
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        return "not an evaluation record: no string id"
    return data


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """The newline-terminated lines of ``data`` (without newlines) and what follows the last
    newline. Only ``\\n`` ends a line: JSON escapes every other control character."""
    body, newline, tail = data.rpartition(b"\n")
    return (body.split(b"\n") if newline else []), tail


def scan_results(data: bytes) -> ResultsScan:
    lines, tail = split_lines(data)
    scan = ResultsScan(keep_bytes=len(data) - len(tail))
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue  # a blank line holds no record; nothing is lost by skipping it
        parsed = parse_line(raw)
        if isinstance(parsed, dict):
            scan.records.append(parsed)
        else:
            scan.damaged.append(DamagedLine(number, parsed))
    if tail:
        parsed = parse_line(tail)
        why = "though the record parses" if isinstance(parsed, dict) else parsed
        scan.torn = DamagedLine(len(lines) + 1, f"no newline at the end; {why}")
    return scan


def read_done(path: Path) -> list[dict[str, Any]]:
    """Every intact record of ``path``. Each damaged line is reported on stderr as
    ``path:line`` and skipped (it stays in the file); a torn last line is reported and cut,
    so appending resumes on a clean line. A file with lines but not one record (``--out``
    naming some other file) is refused rather than written into."""
    if not path.exists():
        return []
    scan = scan_results(path.read_bytes())
    if scan.damaged and not scan.records:
        first = scan.damaged[0]
        raise ResultsFileError(
            f"{path} does not look like an evaluation results file ({path}:{first.number}: "
            f"{first.reason}; no line is a record); choose another --out, or pass --restart "
            "to replace it"
        )
    for line in scan.damaged:
        err.print(f"[yellow]warning:[/] {escape(f'{path}:{line.number}')}: damaged line "
                  f"skipped ({escape(line.reason)}); it stays in the file and its question is "
                  "run again", soft_wrap=True)
    if scan.torn:
        err.print(f"[yellow]warning:[/] {escape(f'{path}:{scan.torn.number}')}: torn last "
                  f"line cut ({escape(scan.torn.reason)}); its question is run again",
                  soft_wrap=True)
        with open(path, "r+b") as handle:
            handle.truncate(scan.keep_bytes)
            os.fsync(handle.fileno())
    return scan.records


def drop_records(path: Path, ids: set[str]) -> None:
    """Rewrite ``path`` without the intact records whose id is in ``ids`` (to run them
    again); every other line, damaged ones included, stays byte for byte. Atomic: a crash
    leaves the old file or the new one."""
    lines, tail = split_lines(path.read_bytes())
    kept = [raw for raw in lines
            if not (isinstance(parsed := parse_line(raw), dict) and parsed["id"] in ids)]
    partial = path.with_suffix(".rewrite.tmp")
    with open(partial, "wb") as handle:
        handle.write(b"".join(raw + b"\n" for raw in kept) + tail)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)

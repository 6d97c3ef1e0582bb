"""Name lookup with a suggestion: registries (modules, tools, metrics) are addressed by names
typed into YAML or the CLI, where a typo should be answered with the likely intended name."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """``table[name]``, or a KeyError saying ``unknown {kind} 'name'; did you mean ...?``."""
    try:
        return table[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(table), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown {kind} {name!r}{hint}") from None

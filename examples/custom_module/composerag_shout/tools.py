"""``shout_text``: a tool an agent graph may allow (``tools: [shout_text]``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from compose.tools.registry import tool


@tool(timeout_s=1.0)
def shout_text(text: Annotated[str, Field(min_length=1, max_length=500)]) -> str:
    """Upper-case a piece of text."""
    return text.upper()

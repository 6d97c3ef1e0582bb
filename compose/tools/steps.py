"""One recorded agent step: the audit trail a reviewer reads after a tool-using run.

Usage::

    from compose.tools.steps import AgentStep
    AgentStep(step=1, thought="look it up", tool="bmi", arguments={...}, valid_call=True)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from compose.tools.execute import cap_text


class AgentStep(BaseModel):
    """Thought, action and what came of it. ``valid_call`` is None for a final answer, else
    whether the call parsed, named an allowed tool and passed argument validation."""

    step: int = Field(ge=1)
    thought: str = ""
    tool: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: str = Field(default="", description="The observation shown to the agent (capped).")
    error: str | None = None
    latency_s: float = 0.0
    valid_call: bool | None = None
    answer: str | None = None

    def observation(self, max_chars: int) -> str:
        """How the agent sees this step's outcome in its next prompt."""
        text = f"ERROR: {self.error}" if self.error else self.result
        return cap_text(text, max_chars)

"""Tool execution for agent graphs: the agent's decision -> a recorded step (no LLM).

A tool call is checked against this node's allow-list, its arguments validated against the
tool's schema, run with the tool's timeout and its result capped; a final answer ends the
run; an output that could not be parsed is recorded as a failed call; a call identical to an
earlier one is run but points back at that step's observation instead of repeating it. Every
outcome becomes an :class:`~compose.tools.steps.AgentStep` with the step number, thought,
tool, arguments, result summary, latency and error - the audit trail, and the observation
the agent reads next.

Usage (from YAML)::

    execute:
      module: execute_tool
      params: {tools: [evidence_search, bmi]}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from compose.module import Module
from compose.modules.tool_nodes import ToolParams, UsesTools
from compose.registry import register
from compose.runtime import ModuleContext
from compose.tools.execute import cap_text, execute_call
from compose.tools.parse import Decision
from compose.tools.steps import AgentStep


class ExecuteToolInput(BaseModel):
    decision: Decision
    steps: list[AgentStep] = Field(default_factory=list)


class ExecuteToolOutput(BaseModel):
    steps: list[AgentStep]
    done: bool
    answer: str = ""


class ExecuteToolParams(ToolParams):
    timeout_s: float | None = Field(default=None, gt=0,
                                    description="Tighten every tool's own timeout.")
    max_result_chars: int | None = Field(default=None, ge=64,
                                         description="Tighten every tool's result cap.")


@register
class ExecuteTool(UsesTools, Module[ExecuteToolInput, ExecuteToolOutput, ExecuteToolParams]):
    name = "execute_tool"
    purpose = "Validate and run the agent's tool call (allow-list, timeout, size cap); record it."
    cacheable = False  # tools may read live state (an index, a clock); runs are cheap

    @classmethod
    def trace_summary(cls, output: dict[str, Any]) -> str:
        """The last recorded step: the final answer, or the call with its outcome."""
        from rich.markup import escape

        step = (output.get("steps") or [{}])[-1]
        if step.get("answer") is not None:
            return f"final answer: [bold]{escape(step['answer'])}[/]"
        name = escape(step.get("tool") or "(no call)")
        timing = f" in {step.get('latency_s', 0):.2f} s"
        if step.get("error"):
            return f"[red]{name} failed[/]{timing}: {escape(step['error'][:200])}"
        return f"[green]{name}[/]{timing}: {escape((step.get('result') or '')[:200])}"

    def run(self, inp: ExecuteToolInput, ctx: ModuleContext) -> ExecuteToolOutput:
        decision = inp.decision
        number = len(inp.steps) + 1
        if decision.answer is not None:
            step = AgentStep(step=number, thought=decision.thought, answer=decision.answer,
                             result=f"final answer: {decision.answer}")
            return ExecuteToolOutput(steps=[*inp.steps, step], done=True,
                                     answer=decision.answer)
        if decision.call is None:
            step = AgentStep(step=number, thought=decision.thought, valid_call=False,
                             error=f"could not read your step: {decision.error}. Reply with "
                             "one JSON object, a tool call or a final_answer.",
                             result=cap_text(decision.raw, 300))
            return ExecuteToolOutput(steps=[*inp.steps, step], done=False)
        obs = execute_call(decision.call, self.params.tools, ctx,
                           timeout_s=self.params.timeout_s,
                           max_chars=self.params.max_result_chars)
        step = AgentStep(step=number, thought=decision.thought, tool=obs.tool,
                         arguments=obs.arguments, result=obs.result, error=obs.error,
                         latency_s=round(obs.latency_s, 4), valid_call=obs.valid)
        earlier = next((s.step for s in inp.steps if obs.valid and s.tool == obs.tool
                        and s.arguments == obs.arguments), None)
        if earlier is not None:
            # Small models repeat themselves; repeating the observation would only grow the
            # prompt, so the agent is pointed back at it instead.
            step = step.model_copy(update={
                "result": "", "error": f"same call as step {earlier}; its observation is "
                "above. Call another tool or give the final answer."})
        return ExecuteToolOutput(steps=[*inp.steps, step], done=False)

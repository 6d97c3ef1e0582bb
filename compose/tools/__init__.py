"""Tools for tool-augmented agents: a typed registry, safe execution, the decision parser,
graph-as-tool, and built-in (medical) tools.

Usage::

    from compose.tools.registry import tool, get_tool
    from compose.tools.execute import ToolCall, execute_call
"""

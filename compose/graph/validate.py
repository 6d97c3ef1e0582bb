"""Everything that can be checked before a graph runs, each error tied to a YAML path/line.

Checks: the spec's own schema, unknown modules, bad module params, unknown module fields in
mappings, state fields read before any write, unreachable nodes, dead ends, edges to unknown
nodes, loops without a budget, branch lists without a default, tools that are not registered
or not in the graph's ``tools:`` allow-list.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ValidationError

from compose.graph.spec import END, GraphSpec
from compose.graph.yaml_source import Path_, YamlSource
from compose.registry import get_module
from compose.tools.registry import get_tool

RESERVED_FIELDS = {"trace", "_loops", "_route"}


class SpecIssue(BaseModel):
    path: tuple[str | int, ...]
    message: str
    line: int | None = None

    def render(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line else filename
        dotted = ".".join(str(p) for p in self.path) or "(top)"
        return f"{where}: {dotted}: {self.message}"


class GraphValidationError(ValueError):
    def __init__(self, issues: list[SpecIssue], filename: str) -> None:
        self.issues = issues
        self.filename = filename
        super().__init__(
            f"{len(issues)} problem(s) in graph {filename}:\n"
            + "\n".join("  " + issue.render(filename) for issue in issues)
        )


def pydantic_issues(exc: ValidationError, prefix: Path_ = ()) -> list[SpecIssue]:
    return [SpecIssue(path=(*prefix, *err["loc"]), message=err["msg"]) for err in exc.errors()]


def attach_lines(issues: Iterable[SpecIssue], source: YamlSource | None) -> list[SpecIssue]:
    if source is None:
        return list(issues)
    return [issue.model_copy(update={"line": source.line_of(issue.path)}) for issue in issues]


def _module_checks(spec: GraphSpec, issues: list[SpecIssue]) -> dict[str, type]:
    modules: dict[str, type] = {}
    for name, node in spec.nodes.items():
        base: Path_ = ("nodes", name)
        if name in (END, "START"):
            issues.append(SpecIssue(path=base, message=f"{name!r} is a reserved node name"))
        try:
            module = get_module(node.module)
        except KeyError as exc:
            issues.append(SpecIssue(path=(*base, "module"), message=str(exc.args[0])))
            continue
        modules[name] = module
        try:
            module.Params.model_validate(node.params)
        except ValidationError as exc:
            issues.extend(pydantic_issues(exc, (*base, "params")))
        for field in node.inputs:
            if field not in module.Input.model_fields:
                issues.append(SpecIssue(
                    path=(*base, "inputs", field),
                    message=f"module {node.module!r} has no input field {field!r} "
                    f"(fields: {', '.join(module.Input.model_fields)})"))
        for field in node.outputs:
            if field not in module.Output.model_fields:
                issues.append(SpecIssue(
                    path=(*base, "outputs", field),
                    message=f"module {node.module!r} has no output field {field!r} "
                    f"(fields: {', '.join(module.Output.model_fields)})"))
    return modules


def written_fields(spec: GraphSpec, node: str, module: type) -> set[str]:
    mapping = spec.nodes[node].outputs
    return {mapping.get(field, field) for field in module.Output.model_fields}


def successors(spec: GraphSpec) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in spec.nodes}
    for edge in spec.edges:
        graph.setdefault(edge.source, set()).update(edge.targets())
    return graph


def _ancestors(graph: dict[str, set[str]], entry: str) -> dict[str, set[str]]:
    """For each node, the nodes that can run before it on some path from the entry."""
    before: dict[str, set[str]] = {name: set() for name in graph}
    changed = True
    while changed:
        changed = False
        for node, nexts in graph.items():
            if node not in before:
                continue
            for nxt in nexts:
                if nxt in before:
                    grown = before[nxt] | before[node] | {node}
                    if grown != before[nxt]:
                        before[nxt] = grown
                        changed = True
    return before


def _structure_checks(spec: GraphSpec, issues: list[SpecIssue]) -> dict[str, set[str]]:
    known = set(spec.nodes)
    if spec.entry not in known:
        issues.append(SpecIssue(path=("entry",), message=f"entry node {spec.entry!r} is not "
                                "defined under nodes"))
    for i, edge in enumerate(spec.edges):
        if edge.source not in known:
            issues.append(SpecIssue(path=("edges", i, "from"),
                                    message=f"edge from unknown node {edge.source!r}"))
        if edge.to is not None and edge.to not in known | {END}:
            issues.append(SpecIssue(path=("edges", i, "to"),
                                    message=f"edge to unknown node {edge.to!r}"))
        for j, branch in enumerate(edge.branches or []):
            if branch.to not in known | {END}:
                issues.append(SpecIssue(path=("edges", i, "branches", j, "to"),
                                        message=f"branch to unknown node {branch.to!r}"))
        if edge.branches:
            last = edge.branches[-1]
            if last.when is not None or last.budget is not None:
                issues.append(SpecIssue(
                    path=("edges", i, "branches", len(edge.branches) - 1),
                    message="the last branch must be the unconditional default "
                    "(no 'when', no 'budget')"))
    sources = [edge.source for edge in spec.edges]
    for name in spec.nodes:
        if sources.count(name) > 1 and any(e.branches for e in spec.edges_from(name)):
            issues.append(SpecIssue(path=("nodes", name), message="a node with branches "
                                    "must have exactly one outgoing edge entry"))
        if name not in sources:
            issues.append(SpecIssue(path=("nodes", name), message="node has no outgoing edge "
                                    "(add an edge to another node or to END)"))
    graph = successors(spec)
    reached, frontier = set(), [spec.entry] if spec.entry in known else []
    while frontier:
        node = frontier.pop()
        if node in reached or node == END:
            continue
        reached.add(node)
        frontier.extend(graph.get(node, ()))
    for name in spec.nodes:
        if name not in reached and spec.entry in known:
            issues.append(SpecIssue(path=("nodes", name),
                                    message=f"node is unreachable from entry {spec.entry!r}"))
    _loop_checks(spec, issues)
    return graph


def _loop_checks(spec: GraphSpec, issues: list[SpecIssue]) -> None:
    """Removing every budgeted branch must leave an acyclic graph."""
    unbudgeted: dict[str, set[str]] = {name: set() for name in spec.nodes}
    for edge in spec.edges:
        targets = [edge.to] if edge.to else [b.to for b in edge.branches or [] if b.budget is None]
        unbudgeted.setdefault(edge.source, set()).update(t for t in targets if t in spec.nodes)
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(unbudgeted.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                cycle = visit(nxt, stack)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in spec.nodes:
        if state.get(node) is None:
            cycle = visit(node, [])
            if cycle:
                first = next(i for i, e in enumerate(spec.edges) if e.source == cycle[-2])
                issues.append(SpecIssue(
                    path=("edges", first),
                    message="loop without a budget: " + " -> ".join(cycle)
                    + " (give one branch of the loop a 'budget')"))
                return


def _dataflow_checks(spec: GraphSpec, modules: dict[str, type], graph: dict[str, set[str]],
                     issues: list[SpecIssue]) -> None:
    before = _ancestors(graph, spec.entry)
    inputs = set(spec.inputs)
    writes = {name: written_fields(spec, name, module) for name, module in modules.items()}
    all_written = inputs.union(*writes.values()) if writes else set(inputs)
    for name, module in modules.items():
        node = spec.nodes[name]
        available = inputs.union(*(writes.get(a, set()) for a in before.get(name, set())))
        for field, info in module.Input.model_fields.items():
            state_field = node.inputs.get(field, field)
            explicit = field in node.inputs
            if state_field in available:
                continue
            if not explicit and not info.is_required():
                continue
            where = ("nodes", name, "inputs", field) if explicit else ("nodes", name)
            if state_field in all_written:
                message = f"reads state field {state_field!r} before any node writes it"
            else:
                message = (f"reads state field {state_field!r} (module input {field!r}) that "
                           "no node and no graph input writes")
            issues.append(SpecIssue(path=where, message=message))
    for i, edge in enumerate(spec.edges):
        visible = inputs.union(writes.get(edge.source, set()), *(
            writes.get(a, set()) for a in before.get(edge.source, set())))
        for j, branch in enumerate(edge.branches or []):
            if branch.when is not None and branch.when.field not in visible:
                issues.append(SpecIssue(
                    path=("edges", i, "branches", j, "when", "field"),
                    message=f"condition on state field {branch.when.field!r}, which is not "
                    "written before this edge"))
            if branch.budget_per is not None and branch.budget_per not in visible:
                issues.append(SpecIssue(
                    path=("edges", i, "branches", j, "budget_per"),
                    message=f"budget_per names state field {branch.budget_per!r}, which is "
                    "not written before this edge"))
    for k, field in enumerate(spec.outputs):
        if field not in all_written:
            issues.append(SpecIssue(path=("outputs", k),
                                    message=f"graph output {field!r} is never written"))
    for field in spec.state:
        if field in RESERVED_FIELDS:
            issues.append(SpecIssue(path=("state", field), message="reserved field name"))


def _tool_checks(spec: GraphSpec, modules: dict[str, type], issues: list[SpecIssue]) -> None:
    """Every listed tool is registered, and a tool-using node allows only tools from the
    graph's ``tools:`` allow-list, so the allow-list is readable in one place."""
    for k, name in enumerate(spec.tools):
        try:
            get_tool(name)
        except KeyError as exc:
            issues.append(SpecIssue(path=("tools", k), message=str(exc.args[0])))
    allowed = set(spec.tools)
    for node_name, module in modules.items():
        if not getattr(module, "uses_tools", False):
            continue
        for k, name in enumerate(spec.nodes[node_name].params.get("tools") or []):
            if name not in allowed:
                issues.append(SpecIssue(
                    path=("nodes", node_name, "params", "tools", k),
                    message=f"tool {name!r} is not in the graph's tools: allow-list "
                    f"({', '.join(spec.tools) or 'empty'})"))


def validate_spec(spec: GraphSpec, source: YamlSource | None = None) -> list[SpecIssue]:
    """Return every problem found (empty when the graph is valid)."""
    issues: list[SpecIssue] = []
    modules = _module_checks(spec, issues)
    _tool_checks(spec, modules, issues)
    graph = _structure_checks(spec, issues)
    _dataflow_checks(spec, modules, graph, issues)
    return attach_lines(issues, source)

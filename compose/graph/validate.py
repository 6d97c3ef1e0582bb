"""Everything that can be checked before a graph runs, each error tied to a YAML path/line.

Checks: the spec's own schema, unknown modules, bad module params, unknown module fields in
mappings, state fields read before any write, unreachable nodes, dead ends, edges to unknown
nodes, loops without a budget, branch lists without a default, tools that are not registered
or not in the graph's ``tools:`` allow-list.

Checks of one node or one edge need only that node or edge, so they also run when other parts
of the spec fail the schema (:func:`partial_issues`): a missing ``entry`` does not hide an
unknown module beside it. Checks of the whole graph (reachability, loops, data flow) need a
spec that passed the schema. All of them take time linear in the graph's size, with at most
``MAX_NODES`` nodes, so a hostile spec cannot make validation slow or deep.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from compose.graph.spec import END, EdgeSpec, GraphSpec, NodeSpec
from compose.registry import get_module
from compose.tools.registry import get_tool

if TYPE_CHECKING:
    from compose.graph.yaml_source import Path_, YamlSource

RESERVED_FIELDS = {"trace", "_loops", "_route"}
MAX_NODES = 1_000
"""A graph with more nodes is refused before its nodes are checked one by one."""
SHOWN_ISSUES = 50
"""An error message lists this many issues; ``GraphValidationError.issues`` keeps them all."""


class SpecIssue(BaseModel):
    """One problem: where (a YAML path and line, or the ``--set`` override that caused it) and
    what."""

    path: tuple[str | int, ...]
    message: str
    line: int | None = None
    override: str | None = None

    def render(self, filename: str) -> str:
        dotted = ".".join(str(p) for p in self.path)
        if self.override and not self.line:
            return f"--set {_short(self.override)}: {dotted + ': ' if dotted else ''}{self.message}"
        where = f"{filename}:{self.line}" if self.line else filename
        after = f" (after --set {_short(self.override)})" if self.override else ""
        return f"{where}: {dotted or '(top)'}: {self.message}{after}"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


class GraphValidationError(ValueError):
    """A graph spec that cannot be used, with every problem found (``issues``)."""

    def __init__(self, issues: list[SpecIssue], filename: str) -> None:
        self.issues = issues
        self.filename = filename
        shown = [issue.render(filename) for issue in issues[:SHOWN_ISSUES]]
        if len(issues) > SHOWN_ISSUES:
            shown.append(f"... and {len(issues) - SHOWN_ISSUES} more")
        super().__init__(f"{len(issues)} problem(s) in graph {filename}:\n"
                         + "\n".join("  " + line for line in shown))


def pydantic_issues(exc: ValidationError, prefix: Path_ = ()) -> list[SpecIssue]:
    return [SpecIssue(path=(*prefix, *err["loc"]), message=err["msg"]) for err in exc.errors()]


def attach_lines(issues: Iterable[SpecIssue], source: YamlSource | None) -> list[SpecIssue]:
    if source is None:
        return list(issues)
    return [issue.model_copy(update={"line": source.line_of(issue.path)}) for issue in issues]


def _too_many_nodes(count: int) -> SpecIssue:
    return SpecIssue(path=("nodes",), message=f"the graph has {count:,} nodes; at most "
                     f"{MAX_NODES:,} are allowed")


def _node_checks(nodes: Mapping[str, NodeSpec], tools: list[str] | None,
                 issues: list[SpecIssue]) -> dict[str, type]:
    """Module, params and field-mapping checks of each node, and its tools against the graph's
    allow-list (``tools`` is None when the allow-list itself is invalid)."""
    modules: dict[str, type] = {}
    for name, node in nodes.items():
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
        if tools is not None and getattr(module, "uses_tools", False):
            _allowed_tools(name, node.params.get("tools", []), tools, issues)
    return modules


def _allowed_tools(node: str, named: Any, tools: list[str], issues: list[SpecIssue]) -> None:
    """A tool-using node allows only tools from the graph's ``tools:`` allow-list, so the
    allow-list is readable in one place. ``named`` is the node's raw ``params.tools``; when
    it is not a list of names the module's params check has already said so."""
    for k, name in enumerate(_valid(_TOOL_NAMES.validate_python, named) or []):
        if name not in tools:
            issues.append(SpecIssue(
                path=("nodes", node, "params", "tools", k),
                message=f"tool {name!r} is not in the graph's tools: allow-list "
                f"({', '.join(tools) or 'empty'})"))


def _registered_tools(tools: list[str], issues: list[SpecIssue]) -> None:
    for k, name in enumerate(tools):
        try:
            get_tool(name)
        except KeyError as exc:
            issues.append(SpecIssue(path=("tools", k), message=str(exc.args[0])))


def _edge_checks(edges: Iterable[tuple[int, EdgeSpec]], known: set[str],
                 issues: list[SpecIssue]) -> None:
    """Each edge names defined nodes and ends its branches with a default."""
    for i, edge in edges:
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


def written_fields(spec: GraphSpec, node: str, module: type) -> set[str]:
    mapping = spec.nodes[node].outputs
    return {mapping.get(field, field) for field in module.Output.model_fields}


def successors(spec: GraphSpec) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in spec.nodes}
    for edge in spec.edges:
        graph.setdefault(edge.source, set()).update(edge.targets())
    return graph


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components, sources first (Kosaraju, with explicit stacks so that a
    long chain of nodes cannot exhaust the Python stack)."""
    finished: list[str] = []
    seen: set[str] = set()
    for root in graph:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(graph[root]))]
        while stack:
            node, nexts = stack[-1]
            for nxt in nexts:
                if nxt in graph and nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, iter(graph[nxt])))
                    break
            else:
                stack.pop()
                finished.append(node)
    preds: dict[str, set[str]] = {name: set() for name in graph}
    for name, nexts in graph.items():
        for nxt in nexts & preds.keys():
            preds[nxt].add(name)
    components: list[list[str]] = []
    placed: set[str] = set()
    for root in reversed(finished):
        if root in placed:
            continue
        placed.add(root)
        component, todo = [root], [root]
        while todo:
            for pred in preds[todo.pop()] - placed:
                placed.add(pred)
                component.append(pred)
                todo.append(pred)
        components.append(component)
    return components


def _upstream_writes(graph: dict[str, set[str]],
                     writes: dict[str, set[str]]) -> dict[str, set[str]]:
    """For each node, the state fields written by nodes that can run before it on some path
    (its own writes too when it lies on a loop)."""
    components = _components(graph)
    index = {name: i for i, component in enumerate(components) for name in component}
    before: list[set[str]] = [set() for _ in components]
    for i, component in enumerate(components):  # every predecessor component came earlier
        own = set().union(*(writes.get(name, set()) for name in component))
        if len(component) > 1 or component[0] in graph[component[0]]:
            before[i] |= own
        after = before[i] | own
        for name in component:
            for nxt in graph[name] & index.keys():
                if index[nxt] != i:
                    before[index[nxt]] |= after
    return {name: before[index[name]] for name in graph}


def _structure_checks(spec: GraphSpec, issues: list[SpecIssue]) -> dict[str, set[str]]:
    known = set(spec.nodes)
    if spec.entry not in known:
        issues.append(SpecIssue(path=("entry",), message=f"entry node {spec.entry!r} is not "
                                "defined under nodes"))
    _edge_checks(enumerate(spec.edges), known, issues)
    outgoing = Counter(edge.source for edge in spec.edges)
    branching = {edge.source for edge in spec.edges if edge.branches}
    for name in spec.nodes:
        if outgoing[name] > 1 and name in branching:
            issues.append(SpecIssue(path=("nodes", name), message="a node with branches "
                                    "must have exactly one outgoing edge entry"))
        if not outgoing[name]:
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


def _find_cycle(graph: dict[str, set[str]], roots: Iterable[str]) -> list[str] | None:
    """The first cycle a depth-first search from ``roots`` meets (successors in sorted order),
    as ``[a, b, ..., a]``; searched with an explicit stack."""
    state: dict[str, int] = {}
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        path, nexts = [root], [iter(sorted(graph.get(root, ())))]
        while nexts:
            nxt = next(nexts[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                nexts.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                nexts.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _loop_checks(spec: GraphSpec, issues: list[SpecIssue]) -> None:
    """Removing every budgeted branch must leave an acyclic graph."""
    unbudgeted: dict[str, set[str]] = {name: set() for name in spec.nodes}
    for edge in spec.edges:
        targets = [edge.to] if edge.to else [b.to for b in edge.branches or [] if b.budget is None]
        unbudgeted.setdefault(edge.source, set()).update(t for t in targets if t in spec.nodes)
    cycle = _find_cycle(unbudgeted, spec.nodes)
    if cycle:
        first = next(i for i, e in enumerate(spec.edges) if e.source == cycle[-2])
        issues.append(SpecIssue(
            path=("edges", first),
            message="loop without a budget: " + " -> ".join(cycle)
            + " (give one branch of the loop a 'budget')"))


def _dataflow_checks(spec: GraphSpec, modules: dict[str, type], graph: dict[str, set[str]],
                     issues: list[SpecIssue]) -> None:
    inputs = set(spec.inputs)
    writes = {name: written_fields(spec, name, module) for name, module in modules.items()}
    upstream = _upstream_writes(graph, writes)
    all_written = inputs.union(*writes.values()) if writes else set(inputs)
    for name, module in modules.items():
        node = spec.nodes[name]
        available = inputs | upstream.get(name, set())
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
        visible = inputs | writes.get(edge.source, set()) | upstream.get(edge.source, set())
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


def validate_spec(spec: GraphSpec, source: YamlSource | None = None) -> list[SpecIssue]:
    """Return every problem found (empty when the graph is valid)."""
    if len(spec.nodes) > MAX_NODES:
        return attach_lines([_too_many_nodes(len(spec.nodes))], source)
    issues: list[SpecIssue] = []
    _registered_tools(spec.tools, issues)
    modules = _node_checks(spec.nodes, spec.tools, issues)
    graph = _structure_checks(spec, issues)
    _dataflow_checks(spec, modules, graph, issues)
    return attach_lines(issues, source)


_TOOL_NAMES = TypeAdapter(list[str])


def _valid(validate: Callable[[Any], Any], value: Any) -> Any:
    """``validate(value)``, or None when it fails (the schema check that ran before has
    reported why)."""
    try:
        return validate(value)
    except ValidationError:
        return None


def partial_issues(data: Mapping[str, Any]) -> list[SpecIssue]:
    """The checks of single nodes and edges, for spec data that failed the schema: each node
    and edge that is valid on its own is checked, so every independent problem is reported
    in one pass."""
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, dict):
        return []
    if len(raw_nodes) > MAX_NODES:
        return [_too_many_nodes(len(raw_nodes))]
    nodes = {name: node for name, raw in raw_nodes.items() if isinstance(name, str)
             and (node := _valid(NodeSpec.model_validate, raw)) is not None}
    tools = _valid(_TOOL_NAMES.validate_python, data.get("tools", []))
    issues: list[SpecIssue] = []
    if tools is not None:
        _registered_tools(tools, issues)
    _node_checks(nodes, tools, issues)
    raw_edges = data.get("edges")
    if isinstance(raw_edges, list):
        known = {name for name in raw_nodes if isinstance(name, str)}
        edges = [(i, edge) for i, raw in enumerate(raw_edges)
                 if (edge := _valid(EdgeSpec.model_validate, raw)) is not None]
        _edge_checks(edges, known, issues)
    return issues

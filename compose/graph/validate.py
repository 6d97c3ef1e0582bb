"""Everything that can be checked before a graph runs, each error tied to a YAML path/line.

Checks: the spec's own schema, unknown modules, bad module params, unknown module fields in
mappings, state fields read before any write, unreachable nodes, dead ends, edges to unknown
nodes, loops without a budget, branch lists without a default, and each module's own checks
of its nodes (:meth:`compose.module.Module.check_node`: a tool-using node checks that its
tools are registered and in the graph's ``tools:`` allow-list). A spec that passes is
resolved (:func:`resolve_spec`): its modules and validated params are handed on to the
compiler, so nothing is looked up or validated twice.

Checks of one node or one edge need only that node or edge, so they also run when other parts
of the spec fail the schema (:func:`partial_issues`): a missing ``entry`` does not hide an
unknown module beside it. Checks of the whole graph (reachability, loops, data flow) need a
spec that passed the schema. All of them take time linear in the graph's size, with at most
``MAX_NODES`` nodes, so a hostile spec cannot make validation slow or deep.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel, TypeAdapter, ValidationError

from compose.graph.resolved import ResolvedGraph, ResolvedNode, written_fields
from compose.graph.spec import END, EdgeSpec, GraphSpec, NodeSpec
from compose.module import GraphFacts, Module
from compose.registry import get_module

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


class _CheckedNodes(NamedTuple):
    """Each node's module (when registered) and validated params (when valid)."""

    modules: dict[str, type[Module]]
    params: dict[str, BaseModel]


def _node_checks(nodes: Mapping[str, NodeSpec], graph: GraphFacts,
                 issues: list[SpecIssue]) -> _CheckedNodes:
    """Module, params and field-mapping checks of each node, then its module's own checks.
    A module's check may report a problem of the graph as a whole (an unregistered name in
    the ``tools:`` allow-list); several nodes finding it report it once."""
    checked = _CheckedNodes({}, {})
    reported: set[tuple[tuple[str | int, ...], str]] = set()
    for name, node in nodes.items():
        base: Path_ = ("nodes", name)
        if name in (END, "START"):
            issues.append(SpecIssue(path=base, message=f"{name!r} is a reserved node name"))
        try:
            module = get_module(node.module)
        except KeyError as exc:
            issues.append(SpecIssue(path=(*base, "module"), message=str(exc.args[0])))
            continue
        checked.modules[name] = module
        try:
            checked.params[name] = module.Params.model_validate(node.params)
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
        for issue in module.check_node(name, node.params, graph):
            if (issue.path, issue.message) not in reported:
                reported.add((issue.path, issue.message))
                issues.append(SpecIssue(path=issue.path, message=issue.message))
    return checked


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
    for name, targets in graph.items():
        for nxt in targets & preds.keys():
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


def _dataflow_checks(spec: GraphSpec, modules: dict[str, type[Module]],
                     graph: dict[str, set[str]], issues: list[SpecIssue]) -> None:
    inputs = set(spec.inputs)
    writes = {name: written_fields(spec.nodes[name], module) for name, module in modules.items()}
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


def _checked(spec: GraphSpec) -> tuple[list[SpecIssue], _CheckedNodes]:
    if len(spec.nodes) > MAX_NODES:
        return [_too_many_nodes(len(spec.nodes))], _CheckedNodes({}, {})
    issues: list[SpecIssue] = []
    checked = _node_checks(spec.nodes, GraphFacts(tools=spec.tools), issues)
    graph = _structure_checks(spec, issues)
    _dataflow_checks(spec, checked.modules, graph, issues)
    return issues, checked


def validate_spec(spec: GraphSpec, source: YamlSource | None = None) -> list[SpecIssue]:
    """Return every problem found (empty when the graph is valid)."""
    return attach_lines(_checked(spec)[0], source)


def resolve_spec(spec: GraphSpec, source: YamlSource | None = None) -> ResolvedGraph:
    """The spec with each node's module and validated params, for the compiler; raises
    :class:`GraphValidationError` listing every problem (with lines, given ``source``)."""
    issues, checked = _checked(spec)
    if issues:
        raise GraphValidationError(attach_lines(issues, source),
                                   source.filename if source else f"<spec {spec.name}>")
    return ResolvedGraph(spec=spec, nodes={
        name: ResolvedNode(name=name, spec=node, module=checked.modules[name],
                           params=checked.params[name])
        for name, node in spec.nodes.items()})


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
    _node_checks(nodes, GraphFacts(tools=tools), issues)
    raw_edges = data.get("edges")
    if isinstance(raw_edges, list):
        known = {name for name in raw_nodes if isinstance(name, str)}
        edges = [(i, edge) for i, raw in enumerate(raw_edges)
                 if (edge := _valid(EdgeSpec.model_validate, raw)) is not None]
        _edge_checks(edges, known, issues)
    return issues

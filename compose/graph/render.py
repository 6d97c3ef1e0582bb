"""Drawing a graph: Mermaid text always, PNG through graphviz when it is installed."""

from __future__ import annotations

from pathlib import Path

from compose.graph.spec import END, Branch, GraphSpec


def branch_label(branch: Branch) -> str:
    """``grounded equals False; max 2x per sub_question`` - or ``else`` for the default."""
    label = []
    if branch.when is not None:
        cond = branch.when.model_dump(exclude_unset=True)
        field = cond.pop("field")
        label.append(" ".join(f"{field} {op} {value}" for op, value in cond.items()))
    if branch.budget is not None:
        per = f" per {branch.budget_per}" if branch.budget_per else ""
        label.append(f"max {branch.budget}x{per}")
    return "; ".join(label) or "else"


def mermaid(spec: GraphSpec) -> str:
    """Mermaid flowchart of the spec, with conditions and loop budgets on the arrows."""
    lines = ["flowchart TD", "    START([START])", "    END_([END])"]
    ref = {END: "END_"}
    for name, node in spec.nodes.items():
        lines.append(f'    {name}["{name}<br/><small>{node.module}</small>"]')
    lines.append(f"    START --> {spec.entry}")
    for edge in spec.edges:
        if edge.to is not None:
            lines.append(f"    {edge.source} --> {ref.get(edge.to, edge.to)}")
            continue
        for branch in edge.branches or []:
            lines.append(f'    {edge.source} -- "{branch_label(branch)}" --> '
                         f'{ref.get(branch.to, branch.to)}')
    return "\n".join(lines)


def write_png(spec: GraphSpec, path: str | Path) -> None:
    """Requires the ``graphviz`` Python package and the ``dot`` program."""
    import graphviz

    dot = graphviz.Digraph(spec.name)
    dot.node("START", shape="oval")
    dot.node(END, shape="oval")
    for name, node in spec.nodes.items():
        dot.node(name, f"{name}\n({node.module})", shape="box")
    dot.edge("START", spec.entry)
    for edge in spec.edges:
        if edge.to is not None:
            dot.edge(edge.source, edge.to)
        for branch in edge.branches or []:
            dot.edge(edge.source, branch.to, label=branch_label(branch))
    path = Path(path)
    path.write_bytes(dot.pipe(format="png"))

"""Drawing a graph: Mermaid text always, PNG through graphviz when it is installed."""

from __future__ import annotations

from pathlib import Path

from compose.graph.spec import END, GraphSpec


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
            label = []
            if branch.when is not None:
                cond = branch.when.model_dump(exclude_unset=True)
                field = cond.pop("field")
                label.append(" ".join(f"{field} {op} {value}" for op, value in cond.items()))
            if branch.budget:
                label.append(f"max {branch.budget}x")
            text = "; ".join(label) or "else"
            lines.append(f'    {edge.source} -- "{text}" --> {ref.get(branch.to, branch.to)}')
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
        for branch_to, label in (
            [(edge.to, "")] if edge.to else
            [(b.to, f"budget {b.budget}" if b.budget else "") for b in edge.branches or []]
        ):
            dot.edge(edge.source, branch_to, label=label)
    path = Path(path)
    path.write_bytes(dot.pipe(format="png"))

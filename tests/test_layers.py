"""The layer order, checked from the imports: a package may import only from its own layer or
a lower one, and no two packages may import each other, even through others.

The order (bottom to top) is the one the README's architecture section states. A lazy import
inside a function counts as much as one at the top of a file: it still ties the two layers
together. Only names handed to ``importlib.import_module`` as strings escape the check, which
is how the registries load built-ins and plugins by name.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = {"compose": ROOT / "compose", "compose.modules": ROOT / "modules",
               "compose.corpora": ROOT / "corpora"}

LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"compose.text", "compose.config", "compose.lookup", "compose.pid_lock",
              "compose.plugins"}),
    ("resources", {"compose.generators", "compose.structured", "compose.streaming",
                   "compose.corpus", "compose.cache", "compose.retrieval", "compose.corpora",
                   "compose.testing", "compose.telemetry", "compose.adapters"}),
    ("contract", {"compose.runtime", "compose.module", "compose.registry", "compose.trace",
                  "compose.tools"}),
    ("methods", {"compose.modules"}),
    ("composition", {"compose.graph", "compose.api", "compose.durable", "compose.graph_tool"}),
    ("applications", {"compose.eval", "compose.tune", "compose.serve"}),
    ("interface", {"compose.cli"}),
]
LAYER_OF = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
FACADE = "compose"  # compose/__init__.py: names resolved lazily for users, imported by no one


def module_name(package: str, directory: Path, path: Path) -> str:
    parts = path.relative_to(directory).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package, *parts))


def source_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for package, directory in SOURCE_DIRS.items():
        for path in directory.rglob("*.py"):
            name = module_name(package, directory, path)
            if package == "compose" and name.split(".")[1:2] in (["modules"], ["corpora"]):
                continue  # these live in their own directories
            files[name] = path
    return files


def unit_of(module: str) -> str:
    """The layer unit a module belongs to: ``compose.modules`` and ``compose.corpora`` as a
    whole (subpackages included), otherwise ``compose.<first part>``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def imported_modules(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] == "compose"}


def unit_edges(files: dict[str, Path]) -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> the files that make the edge."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, path in files.items():
        source = unit_of(name)
        if source == FACADE:
            continue
        for target in imported_modules(name, path):
            target_unit = unit_of(target)
            if target_unit != source and target_unit != FACADE and (
                    target in files or target_unit in LAYER_OF):
                edges[(source, target_unit)].append(
                    str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name)
    return edges


def upward_imports(edges: dict[tuple[str, str], list[str]]) -> list[str]:
    return [f"{source} ({LAYERS[LAYER_OF[source]][0]}) imports {target} "
            f"({LAYERS[LAYER_OF[target]][0]}) in {', '.join(sorted(set(files)))}"
            for (source, target), files in sorted(edges.items())
            if LAYER_OF[target] > LAYER_OF[source]]


def test_every_package_has_a_layer():
    units = {unit_of(name) for name in source_files()} - {FACADE}
    assert sorted(units - set(LAYER_OF)) == []
    assert sorted(set(LAYER_OF) - units) == []


def test_no_package_imports_from_a_higher_layer():
    assert upward_imports(unit_edges(source_files())) == []


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in unit_edges(source_files()):
        graph[source].add(target)
    cycles = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert cycles == []


def test_the_check_sees_a_lazy_upward_import(tmp_path):
    """The check itself: an import inside a function of a lower package is caught, a
    relative one resolved, and a name given to import_module as a string is not."""
    lazy = tmp_path / "lazy.py"
    lazy.write_text("import importlib\n\ndef f():\n    from ..eval import metrics\n"
                    "    importlib.import_module('compose.cli.main')\n")
    edges = unit_edges({"compose.text.lazy": lazy})
    assert upward_imports(edges) == [
        "compose.text (base) imports compose.eval (applications) in lazy.py"]

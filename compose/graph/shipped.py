"""The graphs shipped in the package (``compose.graphs``), found without the spec machinery.

``composerag graphs`` only needs each graph's name and description, so it reads them here with
the YAML library alone: the spec models and the validator (pydantic, about 0.2 s to import)
stay unloaded. These files come with the package, so they are read without the limits and
line marks that ``compose.graph.yaml_source`` applies to a user's file."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable


def shipped_graphs() -> list[str]:
    folder = resources.files("compose.graphs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def shipped_graph_file(name: str) -> Traversable | None:
    """The packaged YAML file of graph ``name``, or None when no such graph is shipped."""
    resource = resources.files("compose.graphs").joinpath(f"{name}.yaml")
    return resource if resource.is_file() else None


def shipped_description(name: str) -> str:
    import yaml

    resource = shipped_graph_file(name)
    if resource is None:
        raise FileNotFoundError(f"no graph named {name!r}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(resource.read_text(encoding="utf-8"), Loader=loader)
    return str((data or {}).get("description") or "")

"""Find a graph by name or path, apply ``--set`` overrides, parse and validate it."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from compose.graph.spec import GraphSpec
from compose.graph.validate import GraphValidationError, SpecIssue, pydantic_issues, validate_spec
from compose.graph.yaml_source import YamlSource, parse_yaml


def shipped_graphs() -> list[str]:
    folder = resources.files("compose.graphs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def graph_text(name_or_path: str | Path) -> tuple[str, str]:
    """(YAML text, a display name). A shipped graph name wins over a relative path only when
    no such file exists."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"graph file {path} does not exist")
        return path.read_text(encoding="utf-8"), str(path)
    name = str(name_or_path)
    resource = resources.files("compose.graphs").joinpath(f"{name}.yaml")
    if not resource.is_file():
        raise FileNotFoundError(
            f"no graph named {name!r}; shipped graphs: {', '.join(shipped_graphs())}"
        )
    return resource.read_text(encoding="utf-8"), f"{name}.yaml"


def parse_override(expression: str) -> tuple[list[str | int], Any]:
    """``nodes.retrieve.params.k=10`` -> (["nodes", "retrieve", "params", "k"], 10)."""
    if "=" not in expression:
        raise ValueError(f"override {expression!r} must look like dotted.path=value")
    dotted, raw = expression.split("=", 1)
    keys: list[str | int] = [int(p) if p.isdigit() else p for p in dotted.strip().split(".")]
    if not all(str(k) for k in keys):
        raise ValueError(f"override {expression!r} has an empty path segment")
    return keys, yaml.safe_load(raw) if raw.strip() else ""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = copy.deepcopy(data)
    for expression in overrides:
        keys, value = parse_override(expression)
        target: Any = data
        for key in keys[:-1]:
            target = target[key] if isinstance(target, list) else target.setdefault(key, {})
        target[keys[-1]] = value
    return data


def parse_spec(source: YamlSource, overrides: list[str] | None = None) -> GraphSpec:
    if not isinstance(source.data, dict):
        raise GraphValidationError([SpecIssue(path=(), message="a graph file must be a mapping",
                                              line=1)], source.filename)
    data = apply_overrides(source.data, overrides or [])
    try:
        return GraphSpec.model_validate(data)
    except ValidationError as exc:
        issues = [issue.model_copy(update={"line": source.line_of(issue.path)})
                  for issue in pydantic_issues(exc)]
        raise GraphValidationError(issues, source.filename) from None


def load_spec(name_or_path: str | Path, overrides: list[str] | None = None) -> GraphSpec:
    """Parse and fully validate; raises :class:`GraphValidationError` listing every problem."""
    text, display = graph_text(name_or_path)
    source = parse_yaml(text, display)
    spec = parse_spec(source, overrides)
    issues = validate_spec(spec, source)
    if issues:
        raise GraphValidationError(issues, display)
    return spec

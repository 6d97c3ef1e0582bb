"""Find a graph by name or path, apply ``--set`` overrides, parse, validate and resolve it;
and the runtime settings a graph runs with.

Problems caused by an override are reported against the override (``--set EXPR: ...``), not
against a line of the file the user did not touch.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from compose.config import RuntimeConfig
from compose.graph.resolved import ResolvedGraph
from compose.graph.shipped import shipped_graph_file, shipped_graphs
from compose.graph.spec import GraphSpec
from compose.graph.validate import (
    GraphValidationError,
    SpecIssue,
    partial_issues,
    pydantic_issues,
    resolve_spec,
)
from compose.graph.yaml_source import (
    MAX_DEPTH,
    Path_,
    YamlSource,
    YamlSyntaxError,
    parse_yaml,
    read_yaml_text,
)
from compose.lookup import lookup


def graph_text(name_or_path: str | Path) -> tuple[str, str]:
    """(YAML text, a display name). A shipped graph name wins over a relative path only when
    no such file exists."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"graph file {path} does not exist")
        return read_yaml_text(path, str(path)), str(path)
    name = str(name_or_path)
    resource = shipped_graph_file(name)
    if resource is None:
        raise FileNotFoundError(
            f"no graph named {name!r}; shipped graphs: {', '.join(shipped_graphs())}"
        )
    return read_yaml_text(resource, f"{name}.yaml"), f"{name}.yaml"


_INDEX = re.compile(r"[0-9]+")


def _override_path(expression: str) -> list[str | int]:
    if "=" not in expression:
        raise ValueError("an override must look like dotted.path=value")
    dotted = expression.split("=", 1)[0]
    keys: list[str | int] = [int(p) if _INDEX.fullmatch(p) else p
                             for p in dotted.strip().split(".")]
    if not all(str(k) for k in keys):
        raise ValueError("the path has an empty segment (write dotted.path=value)")
    if len(keys) > MAX_DEPTH:
        raise ValueError(f"the path has {len(keys):,} segments; at most {MAX_DEPTH} are allowed")
    return keys


def parse_override(expression: str) -> tuple[list[str | int], Any]:
    """``nodes.retrieve.params.k=10`` -> (["nodes", "retrieve", "params", "k"], 10).

    The value is read as YAML under the same limits as a graph file. Raises ValueError saying
    what is wrong with the expression."""
    keys = _override_path(expression)
    raw = expression.split("=", 1)[1]
    if not raw.strip():
        return keys, ""
    try:
        return keys, parse_yaml(raw, "<value>").data
    except YamlSyntaxError as exc:
        raise ValueError(f"cannot read the value: {exc.problem}") from None


def _describe(value: Any) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), f"a {type(value).__name__}")


def _step(target: Any, key: str | int, done: Path_) -> tuple[Any, str | int]:
    """The container under ``target`` where ``key`` lives, and the key as it is stored there.
    Raises ValueError when the path cannot go on."""
    here = ".".join(map(str, done)) or "the graph"
    if isinstance(target, list):
        if not isinstance(key, int):
            raise ValueError(f"{here} is a list: address its entries by index "
                             f"(0 to {len(target) - 1}), not {key!r}")
        if key >= len(target):
            raise ValueError(f"{here} has {len(target)} entries; there is no entry {key}")
        return target, key
    if not isinstance(target, dict):
        raise ValueError(f"{here} is {_describe(target)}, not a mapping, so it has no {key!r}")
    if key not in target and str(key) in target:
        key = str(key)
    if key not in target:
        if done == ():
            lookup(GraphSpec.model_fields, str(key), "setting")
        elif done == ("nodes",):
            lookup(target, str(key), "node")
    return target, key


def _apply(data: dict[str, Any], keys: list[str | int], value: Any) -> None:
    target: Any = data
    for depth, key in enumerate(keys):
        target, key = _step(target, key, tuple(keys[:depth]))
        if depth == len(keys) - 1:
            target[key] = value
        elif isinstance(target, dict):
            target = target.setdefault(key, {})
        else:
            target = target[key]


def apply_overrides(data: dict[str, Any], overrides: list[str],
                    filename: str = "<graph>") -> dict[str, Any]:
    """A copy of ``data`` with each ``dotted.path=value`` override applied in order. Raises
    :class:`GraphValidationError` naming every override that cannot be applied: a path
    through a value that is not a mapping or list, a list index out of range, an unknown
    top-level setting or node (with the likely intended name), a value that is not YAML."""
    data = copy.deepcopy(data)
    issues: list[SpecIssue] = []
    for expression in overrides:
        try:
            keys, value = parse_override(expression)
            _apply(data, keys, value)
        except (ValueError, KeyError) as exc:
            issues.append(SpecIssue(path=(), message=str(exc.args[0]), override=expression))
    if issues:
        raise GraphValidationError(issues, filename)
    return data


def _blame(issues: list[SpecIssue], source: YamlSource,
           overrides: list[str]) -> list[SpecIssue]:
    """Tie each issue to the last override that set its path or created the part of the
    graph it is in (then the file has no line for it); an issue about something an override
    changed inside keeps its line and notes the override."""
    paths = []
    for expression in overrides:
        keys = tuple(_override_path(expression))
        created = next((keys[:n] for n in range(1, len(keys) + 1)
                        if keys[:n] not in source.lines), keys)
        paths.append((expression, keys, created))
    blamed = []
    for issue in issues:
        for expression, keys, created in reversed(paths):
            if issue.path[:len(keys)] == keys or issue.path[:len(created)] == created:
                issue = issue.model_copy(update={"override": expression, "line": None})
                break
            if issue.path and keys[:len(issue.path)] == issue.path:
                issue = issue.model_copy(update={"override": expression})
                break
        blamed.append(issue)
    return blamed


def _fail(issues: list[SpecIssue], source: YamlSource, overrides: list[str]) -> NoReturn:
    lined = [issue.model_copy(update={"line": source.line_of(issue.path)}) for issue in issues]
    raise GraphValidationError(_blame(lined, source, overrides), source.filename)


def _parsed(source: YamlSource, overrides: list[str]) -> GraphSpec:
    if not isinstance(source.data, dict):
        message = ("the file is empty; a graph needs at least name, entry and nodes"
                   if source.data is None else
                   f"a graph file must be a mapping (name, entry, nodes, ...), not "
                   f"{_describe(source.data)}")
        line = 1 if source.data is None else source.line_of(())
        raise GraphValidationError([SpecIssue(path=(), message=message, line=line)],
                                   source.filename)
    data = apply_overrides(source.data, overrides, source.filename)
    try:
        return GraphSpec.model_validate(data)
    except ValidationError as exc:
        _fail(pydantic_issues(exc) + partial_issues(data), source, overrides)


def parse_spec(source: YamlSource, overrides: list[str] | None = None) -> GraphSpec:
    """The spec's schema check; when it fails, the checks of single nodes and edges are
    reported with it. :func:`validate_spec` runs the graph checks on the result."""
    return _parsed(source, overrides or [])


def load_resolved(name_or_path: str | Path,
                  overrides: list[str] | None = None) -> ResolvedGraph:
    """Parse, fully validate and resolve; raises :class:`GraphValidationError` listing every
    problem (:class:`YamlSyntaxError`, a subclass, when the file cannot be read as YAML)."""
    text, display = graph_text(name_or_path)
    source = parse_yaml(text, display)
    spec = _parsed(source, overrides or [])
    try:
        return resolve_spec(spec)
    except GraphValidationError as exc:
        _fail(exc.issues, source, overrides or [])


def load_spec(name_or_path: str | Path, overrides: list[str] | None = None) -> GraphSpec:
    """:func:`load_resolved`, for a caller that needs only the validated spec."""
    return load_resolved(name_or_path, overrides).spec


def runtime_config(spec: GraphSpec, *, index: str | Path | None = None,
                   cache: bool | None = None, cache_path: str | None = None) -> RuntimeConfig:
    """The runtime settings ``spec`` asks for, with the caller's index and cache choices."""
    config = RuntimeConfig(generator=spec.generator, retriever=spec.retriever, cache=spec.cache)
    if index is not None:
        config.retriever = config.retriever.model_copy(update={"index": str(index)})
    if cache is not None:
        config.cache = config.cache.model_copy(update={"enabled": cache})
    if cache_path is not None:
        config.cache = config.cache.model_copy(update={"path": cache_path})
    return config

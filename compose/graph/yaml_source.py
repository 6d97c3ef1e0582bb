"""Safe YAML loading that remembers the line of every key, so errors can point at it.

Only ``yaml.SafeLoader`` node types are used: a graph file cannot construct Python objects or
import code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


class YamlSource:
    """Parsed YAML data plus a map from key paths to 1-based line numbers."""

    def __init__(self, data: Any, lines: dict[Path_, int], filename: str) -> None:
        self.data = data
        self.lines = lines
        self.filename = filename

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def where(self, path: Path_) -> str:
        line = self.line_of(path)
        return f"{self.filename}:{line}" if line else self.filename


class YamlSyntaxError(ValueError):
    pass


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
        raise YamlSyntaxError(f"line {node.start_mark.line + 1}: tag {node.tag!r} is not allowed")
    if isinstance(node, yaml.MappingNode):
        result: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSyntaxError(f"line {key_node.start_mark.line + 1}: keys must be scalars")
            key = _scalar(key_node)
            lines[(*path, key)] = key_node.start_mark.line + 1
            if key in result:
                raise YamlSyntaxError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            result[key] = _walk(value_node, (*path, key), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    return yaml.SafeLoader("").construct_object(node, deep=True)


def parse_yaml(text: str, filename: str = "<string>") -> YamlSource:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        raise YamlSyntaxError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    lines: dict[Path_, int] = {}
    try:
        data = {} if root is None else _walk(root, (), lines)
    except YamlSyntaxError as exc:
        raise YamlSyntaxError(f"{filename}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"{filename}: {exc}") from exc
    return YamlSource(data, lines, filename)


def read_yaml(path: str | Path) -> YamlSource:
    path = Path(path)
    return parse_yaml(path.read_text(encoding="utf-8"), str(path))

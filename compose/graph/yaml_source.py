"""Safe YAML loading that remembers the line of every key, so errors can point at it.

Only plain mappings, sequences and PyYAML's safe scalars are built: a graph file cannot
construct Python objects or import code. Reading is also bounded, because a graph file may
come from anyone: the file size, the nesting depth and the number of values after aliases are
expanded are capped, so a hostile or broken file (an alias "billion laughs", ``&a [*a]``, ten
thousand nested brackets, a 10 MB file, UTF-16 text) is refused with its line instead of
exhausting memory, time or the Python stack. Every refusal is a :class:`YamlSyntaxError`, a
:class:`GraphValidationError` with one issue.
"""

from __future__ import annotations

import codecs
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from compose.graph.validate import GraphValidationError, SpecIssue

Path_ = tuple[str | int, ...]

MAX_BYTES = 2**20
"""A graph file's size limit (1 MiB); the shipped graphs are under 4 KB."""
MAX_DEPTH = 64
"""Mappings and sequences nested deeper than this are refused (the shipped graphs reach 6)."""
MAX_VALUES = 25_000
"""The most YAML values a file may hold once every alias is expanded."""


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


class YamlSyntaxError(GraphValidationError):
    """The text cannot be read as YAML: too large, not UTF-8, invalid syntax, a forbidden tag,
    or beyond a nesting or alias limit. ``line`` is where reading stopped."""

    def __init__(self, filename: str, line: int, problem: str) -> None:
        super().__init__([SpecIssue(path=(), message=problem, line=line)], filename)
        self.line = line
        self.problem = problem
        self.args = (f"{filename}:{line}: {problem}",)


def read_yaml_text(file: Path | Traversable, filename: str) -> str:
    """The text of a YAML file (a path or a package resource), read only up to the size limit
    and decoded as UTF-8, the encoding YAML files are expected in."""
    with file.open("rb") as stream:
        data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise _too_large(filename, data.count(b"\n", 0, MAX_BYTES) + 1)
    return decode_utf8(data, filename)


def _too_large(filename: str, line: int) -> YamlSyntaxError:
    return YamlSyntaxError(filename, line, f"the file is larger than {MAX_BYTES:,} bytes "
                           f"(1 MiB, the limit for a graph file), passing it at line {line}")


def decode_utf8(data: bytes, filename: str) -> str:
    """``data`` as text, or an error naming the first byte that is not UTF-8 and its line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        boms = {codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32",
                codecs.BOM_UTF16_LE: "UTF-16", codecs.BOM_UTF16_BE: "UTF-16"}
        found = next((name for bom, name in boms.items() if data.startswith(bom)), None)
        hint = f" (it starts with a {found} byte order mark)" if found else ""
        raise YamlSyntaxError(
            filename, line, f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at "
            f"offset {exc.start}, line {line}){hint}; save it as UTF-8") from None


class _PurePythonEvents(Reader, Scanner, Parser):
    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)


try:  # libyaml's parser: the same events, from C, 5-100x faster than PyYAML's scanner
    from yaml._yaml import CParser as _Events
except ImportError:  # PyYAML built without libyaml
    _Events = _PurePythonEvents  # type: ignore[misc, assignment]


class _BoundedLoader(Composer, _Events, SafeConstructor, Resolver):
    """PyYAML's safe loading (events, then PyYAML's own composer, resolver and safe
    constructor), refusing nesting beyond ``MAX_DEPTH`` and more than ``MAX_VALUES`` nodes
    while it composes: the composer recurses once per level, so depth has to be checked
    before the Python stack runs out, not after."""

    def __init__(self, text: str, filename: str) -> None:
        _Events.__init__(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.filename = filename
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        nested = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        self.depth += nested
        self.nodes += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _too_deep(self.filename, self._next_line())
            if self.nodes > MAX_VALUES:
                raise _too_many(self.filename, self._next_line())
            return super().compose_node(parent, index)
        finally:
            self.depth -= nested

    def _next_line(self) -> int:
        """The 1-based line of the event about to be composed."""
        event = self.peek_event()
        mark = event.start_mark if event is not None else None
        return mark.line + 1 if mark is not None else 1


def _too_deep(filename: str, line: int) -> YamlSyntaxError:
    return YamlSyntaxError(filename, line, f"mappings and sequences are nested more than "
                           f"{MAX_DEPTH} levels deep here (aliases included); flatten the file")


def _too_many(filename: str, line: int) -> YamlSyntaxError:
    return YamlSyntaxError(filename, line, f"the file holds more than {MAX_VALUES:,} values "
                           "once its aliases are expanded (an alias '*name' repeats its "
                           "anchor's whole value each time it is used)")


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Builder:
    """Turns composed nodes into plain data, recording each path's line. Aliases share one
    node, so expansion is counted and a node met again inside itself is a recursive alias."""

    def __init__(self, loader: _BoundedLoader) -> None:
        self.loader = loader
        self.filename = loader.filename
        self.lines: dict[Path_, int] = {}
        self.values = 0
        self.open: set[int] = set()

    def build(self, node: yaml.Node, path: Path_) -> Any:
        line = node.start_mark.line + 1
        self.values += 1
        if self.values > MAX_VALUES:
            raise _too_many(self.filename, line)
        self.lines.setdefault(path, line)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if len(path) >= MAX_DEPTH:  # this collection is one level below its path's length
            raise _too_deep(self.filename, line)
        if node.tag not in _PLAIN_TAGS:
            raise YamlSyntaxError(self.filename, line, f"tag {node.tag!r} is not allowed")
        if id(node) in self.open:
            raise YamlSyntaxError(self.filename, line, "an alias refers to a value that "
                                  "contains it (a recursive anchor such as '&a [*a]')")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSyntaxError(self.filename, line, "keys must be scalars")
            if key_node.tag == _MERGE_TAG:
                raise YamlSyntaxError(self.filename, line, "merge keys ('<<') are not "
                                      "supported; write the keys out or alias a whole value")
            key = self.scalar(key_node)
            if key in result:
                raise YamlSyntaxError(self.filename, line, f"duplicate key {key!r}")
            self.lines[(*path, key)] = line
            result[key] = self.build(value_node, (*path, key))
        return result

    def scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise ValueError,
            # KeyError, AttributeError... for a bad value under an explicit tag (!!bool x)
            problem = getattr(exc, "problem", None) or str(exc)
            raise YamlSyntaxError(self.filename, node.start_mark.line + 1,
                                  f"cannot read the value {node.value[:40]!r}: {problem}"
                                  ) from None


def _forbidden_character(text: str, filename: str) -> YamlSyntaxError | None:
    """YAML's rule for characters (no control characters, surrogates, U+FFFE...), checked on
    the text itself so that the error names a line whichever parser runs."""
    match = Reader.NON_PRINTABLE.search(text)
    if match is None:
        return None
    return _bad_character(filename, text.count("\n", 0, match.start()) + 1, match.group())


def _bad_character(filename: str, line: int, char: str) -> YamlSyntaxError:
    hint = " (NUL characters: is the file UTF-16? save it as UTF-8)" if char == "\0" else ""
    return YamlSyntaxError(filename, line, f"character U+{ord(char):04X} is not allowed in "
                           f"YAML{hint}")


def _syntax_error(exc: yaml.YAMLError, text: str, filename: str) -> YamlSyntaxError:
    if isinstance(exc, ReaderError):  # libyaml's reader, which counts UTF-8 bytes
        line = text.encode("utf-8")[:exc.position].count(b"\n") + 1
        return _bad_character(filename, line, chr(exc.character))
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    problem = ", ".join(p for p in parts if p) or str(exc)
    return YamlSyntaxError(filename, mark.line + 1 if mark else 1, f"invalid YAML: {problem}")


def parse_yaml(text: str, filename: str = "<string>") -> YamlSource:
    """Parse one YAML document under the limits; an empty document gives ``data=None``."""
    if len(text) > MAX_BYTES:
        raise _too_large(filename, text.count("\n", 0, MAX_BYTES) + 1)
    forbidden = _forbidden_character(text, filename)
    if forbidden is not None:
        raise forbidden
    loader = _BoundedLoader(text, filename)
    try:
        root = loader.get_single_node()
        if root is None:
            return YamlSource(None, {(): 1}, filename)
        builder = _Builder(loader)
        data = builder.build(root, ())
        return YamlSource(data, builder.lines, filename)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text, filename) from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> YamlSource:
    path = Path(path)
    return parse_yaml(read_yaml_text(path, str(path)), str(path))

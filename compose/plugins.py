"""One registry type for everything a graph or a run names by string: modules, tools, metrics,
benchmarks and generator backends.

A name typed into YAML or the CLI is looked up in a registry, never imported as a path, so a
graph file cannot make arbitrary code run. Each registry fills from three sources:

1. explicit registration, :meth:`Registry.add` or its decorator :meth:`Registry.register`,
   which is what a file does when it is imported;
2. an optional built-in table, name -> ``"package.module"`` (a file that registers the name
   when imported) or ``"package.module:attr"`` (an object registered under the name), read
   only when a name is first asked for, so start-up pays only for what it uses;
3. installed packages' entry points in the registry's group (``composerag.modules``...), with
   the same two forms, loaded when a name is not otherwise known or the whole list is wanted.

A plugin that fails to load never hides behind "unknown module": its failure is kept with the
entry point's name and value, every lookup of a missing name says which plugins failed and
why, and every listing warns (:class:`PluginLoadWarning`).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Generic, TypeVar

from compose.lookup import lookup

T = TypeVar("T")

BuiltinTable = Mapping[str, str] | Callable[[], Mapping[str, str]]
"""A table, or a function returning it: a table kept in a higher layer is read only when first
needed (through ``importlib.import_module``), so the registry does not import that layer."""


class PluginLoadWarning(UserWarning):
    """Issued by every listing of a registry while one of its plugins fails to load."""


@dataclass(frozen=True)
class PluginFailure:
    """An entry point whose loading raised: what it was called, what it points at, why."""

    name: str
    value: str
    group: str
    error: Exception

    def __str__(self) -> str:
        return (f"{self.name!r} ({self.value}, group {self.group}): "
                f"{type(self.error).__name__}: {self.error}")


def _describe(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__name__


class Registry(Generic[T]):
    """Names -> objects of one ``kind``, filled by registration, a lazy built-in table and
    the entry points of ``group`` (None: no plugins).

    ``identity`` says when two registrations under one name are the same thing (a tool is
    its function): registering the same thing again replaces the entry, anything else under
    a taken name is refused.
    """

    def __init__(self, kind: str, group: str | None, builtin: BuiltinTable | None = None, *,
                 identity: Callable[[T], object] | None = None) -> None:
        self.kind = kind
        self.group = group
        self._builtin_source = builtin
        self._builtin_table: dict[str, str] | None = None
        self._identity = identity
        self._entries: dict[str, T] = {}
        self._attempted: set[tuple[str, str]] = set()
        self._failures: list[PluginFailure] = []
        self._lock = threading.RLock()

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` as ``name``; a name cannot be taken by a different object, nor a
        built-in name by anything but its own file (even before that file is loaded)."""
        existing = self._entries.get(name)
        if existing is not None and self._same(existing) is not self._same(obj):
            raise ValueError(f"{self.kind} name {name!r} is already registered by "
                             f"{_describe(self._same(existing))}")
        home = self._builtin().get(name, "").partition(":")[0]
        if home and getattr(self._same(obj), "__module__", None) != home:
            raise ValueError(f"{self.kind} name {name!r} is built in ({home})")
        self._entries[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: returns the object unchanged."""

        def decorator(obj: T) -> T:
            return self.add(name, obj)

        return decorator

    def get(self, name: str) -> T:
        """The object registered as ``name``, loading its built-in file or the plugins as
        needed; a KeyError naming the closest names, and any plugin that failed to load."""
        if name not in self._entries and name in self._builtin():
            self._load_builtin(name)
        if name not in self._entries:  # a plugin's name, or a typo to suggest a name for
            self._load_everything()
        try:
            return lookup(self._entries, name, self.kind)
        except KeyError as exc:
            raise self._with_failures(exc) from None

    def check(self, name: str) -> None:
        """Raise :meth:`get`'s KeyError for an unknown ``name``, without importing what a
        known one names: for validating a setting long before it is used."""
        if name in self:
            return
        self._load_plugins()
        try:
            lookup(dict.fromkeys(self._entries.keys() | self._builtin().keys()), name, self.kind)
        except KeyError as exc:
            raise self._with_failures(exc) from None

    def __contains__(self, name: object) -> bool:
        """Registered or built in: cheap, so it loads no plugin (:meth:`names` does)."""
        return name in self._entries or name in self._builtin()

    def names(self) -> list[str]:
        """Every name, sorted, without importing the built-in files; warns of failed plugins."""
        self._load_plugins()
        self._warn_failures()
        return sorted(self._entries.keys() | self._builtin().keys())

    def items(self) -> list[tuple[str, T]]:
        """Every (name, object), sorted by name; warns of failed plugins."""
        self._load_everything()
        self._warn_failures()
        return sorted(self._entries.items())

    @property
    def failed(self) -> tuple[PluginFailure, ...]:
        """The plugins of this registry's group that failed to load, in the order tried."""
        return tuple(self._failures)

    def _same(self, obj: T) -> object:
        return obj if self._identity is None else self._identity(obj)

    def _builtin(self) -> dict[str, str]:
        if self._builtin_table is None:
            source = self._builtin_source
            self._builtin_table = dict(source() if callable(source) else source or {})
        return self._builtin_table

    def _load_builtin(self, name: str) -> None:
        """A built-in is our own code: a failure to load it is a bug, raised as is."""
        self._adopt(EntryPoint(name=name, value=self._builtin()[name], group="builtin"))

    def _load_everything(self) -> None:
        for name in self._builtin():
            if name not in self._entries:
                self._load_builtin(name)
        self._load_plugins()

    def _load_plugins(self) -> None:
        """Try each entry point of the group once per process (one installed later is found
        on the next call); a failure is kept for every later report, never retried."""
        if self.group is None:
            return
        with self._lock:
            for entry in entry_points(group=self.group):
                key = (entry.name, entry.value)
                if key in self._attempted:
                    continue
                self._attempted.add(key)
                try:
                    self._adopt(entry)
                except Exception as exc:
                    self._failures.append(PluginFailure(entry.name, entry.value, self.group,
                                                        exc))

    def _adopt(self, entry: EntryPoint) -> None:
        """A module registers its names itself when imported; an object is registered under
        the entry's name unless importing its module already did."""
        obj = entry.load()
        if not isinstance(obj, ModuleType) and entry.name not in self._entries:
            self.add(entry.name, obj)

    def _with_failures(self, error: KeyError) -> KeyError:
        """An unknown name may be a plugin that failed to load: say which ones did."""
        if not self._failures:
            return error
        return KeyError(f"{error.args[0]}; {self._failure_note()}")

    def _failure_note(self) -> str:
        failures = "; ".join(str(failure) for failure in self._failures)
        return f"{self.kind} plugins that failed to load: {failures}"

    def _warn_failures(self) -> None:
        if self._failures:
            warnings.warn(self._failure_note(), PluginLoadWarning, stacklevel=3)

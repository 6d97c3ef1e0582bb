"""The module registry: the only way a graph can name code to run.

A YAML graph names modules by registry name, never by import path, so loading a graph cannot
import arbitrary code. A built-in module is imported when its name is first asked for (the
table ``compose.modules.BUILTIN`` says which file registers it), so a graph loads only the
modules it names; third-party packages opt in through the ``composerag.modules`` entry-point
group, loaded with every built-in when a name is not built in or the whole list is wanted.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, TypeVar

from compose.lookup import lookup

if TYPE_CHECKING:
    from compose.module import Module

_REGISTRY: dict[str, type[Module]] = {}
_loaded = False
M = TypeVar("M", bound="type[Module]")


def register(cls: M) -> M:
    """Class decorator: add a module class under its ``name``."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__qualname__} has no registry name")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(f"module name {name!r} is already registered by {existing.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def _load_builtin(name: str) -> None:
    from compose.modules import BUILTIN

    if name in BUILTIN:
        import_module(f"compose.modules.{BUILTIN[name]}")


def _load_builtin_and_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from compose.modules import BUILTIN

    for file in sorted(set(BUILTIN.values())):
        import_module(f"compose.modules.{file}")
    for entry in entry_points(group="composerag.modules"):
        entry.load()


def get_module(name: str) -> type[Module]:
    """The class registered as ``name``; a KeyError naming the closest names if none is."""
    if name not in _REGISTRY:
        _load_builtin(name)
    if name not in _REGISTRY:  # a plugin's name, or a typo to suggest a name for
        _load_builtin_and_plugins()
    return lookup(_REGISTRY, name, "module")


def list_modules() -> dict[str, type[Module]]:
    _load_builtin_and_plugins()
    return dict(sorted(_REGISTRY.items()))

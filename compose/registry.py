"""The module registry: the only way a graph can name code to run.

A YAML graph names modules by registry name, never by import path, so loading a graph cannot
import arbitrary code. Built-in modules register on import of ``compose.modules``; third-party
packages opt in through the ``composerag.modules`` entry-point group.
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


def _load_builtin_and_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import_module("compose.modules")
    for entry in entry_points(group="composerag.modules"):
        entry.load()


def get_module(name: str) -> type[Module]:
    _load_builtin_and_plugins()
    return lookup(_REGISTRY, name, "module")


def list_modules() -> dict[str, type[Module]]:
    _load_builtin_and_plugins()
    return dict(sorted(_REGISTRY.items()))

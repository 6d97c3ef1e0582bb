"""The module registry: the only way a graph can name code to run.

A YAML graph names modules by registry name, never by import path, so loading a graph cannot
import arbitrary code. A built-in module is imported when its name is first asked for (the
table ``compose.modules.BUILTIN`` says which file registers it), so a graph loads only the
modules it names; third-party packages opt in through the ``composerag.modules`` entry-point
group (see :mod:`compose.plugins`), loaded when a name is not built in or the whole list is
wanted. A plugin that fails to load is named in the error, not reported as an unknown module.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, TypeVar

from compose.plugins import Registry

if TYPE_CHECKING:
    from compose.module import Module

M = TypeVar("M", bound="type[Module]")


def _builtin_files() -> dict[str, str]:
    """``compose.modules.BUILTIN`` as full module paths, read by name: the registry sits
    below the modules it lists."""
    table: dict[str, str] = import_module("compose.modules").BUILTIN
    return {name: f"compose.modules.{file}" for name, file in table.items()}


MODULES: Registry[type[Module]] = Registry("module", "composerag.modules", _builtin_files)


def register(cls: M) -> M:
    """Class decorator: add a module class under its ``name``."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__qualname__} has no registry name")
    MODULES.add(name, cls)
    return cls


def get_module(name: str) -> type[Module]:
    """The class registered as ``name``; a KeyError naming the closest names (and any plugin
    that failed to load) if none is."""
    return MODULES.get(name)


def list_modules() -> dict[str, type[Module]]:
    """Every module, built-in and plugin, by name; warns of plugins that failed to load."""
    return dict(MODULES.items())

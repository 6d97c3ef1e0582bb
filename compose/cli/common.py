"""What every ``composerag`` command file shares: the two consoles, ``fail`` and the
``--set`` option, defined once so that ``main`` and ``eval_cmd`` print and exit alike.

Like the rest of the CLI, it imports only typer and rich, so that ``--help`` stays instant
(``tests/test_cli_startup.py`` checks what start-up imports).
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

out = Console()
err = Console(stderr=True)

SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a spec value: --set nodes.retrieve.params.k=10 (repeatable).")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` as an error on stderr and end the command with exit ``code``."""
    err.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)

"""Built-in atomic modules. Importing this package registers them all."""

from compose.modules import answer, retrieve

__all__ = ["answer", "retrieve"]

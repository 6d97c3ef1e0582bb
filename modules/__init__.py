"""Built-in atomic modules. Importing this package registers them all."""

from compose.modules import (
    answer,
    construct,
    decompose,
    hops,
    retrieval_decision,
    retrieve,
    rewrite,
    synthesize,
    verify,
)

__all__ = [
    "answer",
    "construct",
    "decompose",
    "hops",
    "retrieval_decision",
    "retrieve",
    "rewrite",
    "synthesize",
    "verify",
]

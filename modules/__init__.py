"""Built-in atomic modules. Importing this package registers them all."""

from compose.modules import (
    answer,
    construct,
    decompose,
    hops,
    moi,
    retrieval_decision,
    retrieve,
    rewrite,
    synthesize,
    tools,
    verdict,
    verify,
)

__all__ = [
    "answer",
    "construct",
    "decompose",
    "hops",
    "moi",
    "retrieval_decision",
    "retrieve",
    "rewrite",
    "synthesize",
    "tools",
    "verdict",
    "verify",
]

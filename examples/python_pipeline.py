"""Define a pipeline in pure Python from composerag's modules - no YAML - and run it.

A retrieve -> answer -> verify graph: the same GraphSpec a YAML file would load into, built
from pydantic objects, so it is validated the same way (unknown modules, fields read before
they are written, loops without budgets are errors before anything runs).

    python examples/python_pipeline.py "Who invented the kelp-oil lamp?"
"""

from __future__ import annotations

import sys
from pathlib import Path

from compose import load_graph
from compose.graph.spec import EdgeSpec, GraphSpec, NodeSpec


def verified_rag_spec(k: int = 3) -> GraphSpec:
    return GraphSpec(
        name="verified_rag",
        description="Retrieve, answer, then check the answer against the passages.",
        entry="retrieve",
        outputs=["answer", "citations", "grounded", "reason"],
        nodes={
            "retrieve": NodeSpec(module="retrieve", params={"k": k}, inputs={"query": "question"}),
            "answer": NodeSpec(module="answer"),
            "verify": NodeSpec(module="verify"),
        },
        edges=[EdgeSpec(source="retrieve", to="answer"),
               EdgeSpec(source="answer", to="verify"),
               EdgeSpec(source="verify", to="END")],
    )


def main(question: str, index: Path | None = None) -> dict:
    from compose.corpora.demo import demo_index

    graph = load_graph(verified_rag_spec(), index=index or demo_index())
    return graph.outputs(graph.invoke({"question": question}))


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "Who invented the kelp-oil lamp?"))

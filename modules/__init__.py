"""Built-in atomic modules, one or a few per file, each registered when its file is imported.

Nothing is imported here: :mod:`compose.registry` imports a file when one of its names is
first asked for, so validating or running a graph pays only for the modules it uses (all of
them together are about a fifth of a second of start-up). ``BUILTIN`` says which file
registers which name; tests/test_cli_startup.py checks it against what the files register.
"""

BUILTIN: dict[str, str] = {
    "agent_step": "agent",
    "answer": "answer",
    "consolidate": "consolidate",
    "construct_question": "construct",
    "decompose": "decompose",
    "diversify_passage": "verdict",
    "execute_tool": "tools",
    "interpret": "dtv",
    "keep_verified": "interpretation_checks",
    "list_interpretations": "interpretation",
    "moi_rerank": "moi.rerank",
    "next_hop": "hops",
    "next_interpretation": "dtv",
    "record_hop": "hops",
    "record_interpretation": "dtv",
    "retrieval_decision": "retrieval_decision",
    "retrieve": "retrieve",
    "rewrite_query": "rewrite",
    "synthesize": "synthesize",
    "verified_diversify": "verdict",
    "verify": "verify",
    "verify_interpretations": "interpretation_checks",
}
"""Registry name -> the file of ``compose.modules`` that registers it."""

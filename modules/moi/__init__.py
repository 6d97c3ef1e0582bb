"""Mixture-of-Intervention (MoI) re-ranking, the parts that need no module machinery.

``proposals`` picks which passage orders to try, ``explore`` runs the exploratory prompts with
a shared KV prefix, ``signals`` scores each exploratory answer, ``aggregate`` turns the scored
orders into per-passage utilities and a new order (and fits slot weights), ``fit`` collects a
development set's samples for that fit, and ``positions`` stores the per-model slot weights.
The module itself is ``compose.modules.moi.rerank``; the CLI is ``compose.cli.moi``.
"""

"""MoI permutation re-ranking: being built (issue 4)."""

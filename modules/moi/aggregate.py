"""From scored orders to passage utilities, a new order, and per-model slot weights.

The additive model: showing order ``pi`` gives an outcome ``y(pi) = b + sum_j a_j u_pi(j)``,
``a_j`` the weight of slot ``j`` and ``u_p`` the debiased utility of passage ``p``. With the
slot weights known, ``X[m, p] = a_(slot of p in order m)`` and the utilities are a ridge
regression of the outcomes on ``X`` (scikit-learn ``Ridge`` with an intercept for ``b``).

Every proposal shows all passages, so the row sums of ``X`` are constant: the utilities are
determined up to a common shift (the ridge penalty picks the centred solution) and only their
differences mean anything. Passages that no proposal moves are not measured at all: their
column is constant and they keep their slot.

The slot weights are fitted once per model by alternating least squares over many questions
(``fit_slot_weights``). They are determined only up to shift and scale (a shift is absorbed by
``b``), so they are stored normalised to [0, 1]; the sign is fixed by the retriever prior
(top-ranked passages have, on average, higher utility).

Usage::

    u = estimate_utilities(orders, y, weights, ridge_lambda=0.1)
    new_order = place(u, orders, weights)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from compose.modules.moi.positions import default_weights


def slot_matrix(orders: Sequence[Sequence[int]]) -> np.ndarray:
    """``S[m, p]``: the slot of passage ``p`` in order ``m``."""
    orders = np.asarray(orders, dtype=int)
    slots = np.empty_like(orders)
    rows = np.arange(orders.shape[0])[:, None]
    slots[rows, orders] = np.arange(orders.shape[1])[None, :]
    return slots


def measured_mask(orders: Sequence[Sequence[int]]) -> np.ndarray:
    """Passages whose slot changes across the orders: only these have an estimable utility."""
    slots = slot_matrix(orders)
    return (slots != slots[0]).any(axis=0)


def design_matrix(orders: Sequence[Sequence[int]], weights: np.ndarray) -> np.ndarray:
    return np.asarray(weights, dtype=float)[slot_matrix(orders)]


def _ridge_model(alpha: float, fit_intercept: bool):
    # Imported on use: scikit-learn takes seconds to import, and a graph that never re-ranks
    # must not pay for it at start-up (every built-in module is registered at load).
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha, fit_intercept=fit_intercept)


def _ridge(x: np.ndarray, y: np.ndarray, ridge_lambda: float) -> tuple[np.ndarray, float]:
    model = _ridge_model(ridge_lambda, fit_intercept=True).fit(x, y)
    return model.coef_, float(model.intercept_)


def estimate_utilities(orders: Sequence[Sequence[int]], y: Sequence[float],
                       weights: np.ndarray, ridge_lambda: float) -> np.ndarray:
    """Ridge least-squares utilities per passage; NaN for passages no order moved."""
    k = len(orders[0])
    utilities = np.full(k, np.nan)
    mask = measured_mask(orders)
    if mask.any():
        x = design_matrix(orders, weights)[:, mask]
        utilities[mask], _ = _ridge(x, np.asarray(y, dtype=float), ridge_lambda)
    return utilities


def place(utilities: np.ndarray, orders: Sequence[Sequence[int]],
          weights: np.ndarray) -> list[int]:
    """The new order: unmeasured passages keep their slot; the measured ones fill the other
    slots, highest utility into the largest weight. Ties go to the better retrieval rank and,
    between equal weights, to the earlier slot."""
    k = len(utilities)
    first = list(orders[0])
    measured = [p for p in range(k) if not np.isnan(utilities[p])]
    new_order = [p if np.isnan(utilities[p]) else -1 for p in first]
    free_slots = sorted((s for s in range(k) if new_order[s] == -1),
                        key=lambda s: (-weights[s], s))
    ranked = sorted(measured, key=lambda p: (-utilities[p], p))
    for slot, passage in zip(free_slots, ranked, strict=True):
        new_order[slot] = passage
    return new_order


def fit_slot_weights(samples: Sequence[tuple[Sequence[Sequence[int]], Sequence[float]]],
                     ridge_lambda: float = 0.1, iterations: int = 100,
                     tol: float = 1e-8) -> np.ndarray:
    """Alternating least squares over questions: fix the weights and solve each question's
    utilities (ridge), then fix the utilities and solve the shared weights. ``samples`` holds
    (orders, outcomes) per question, all with the same number of passages.

    A question's k - 1 utility differences and its intercept already fit k outcomes exactly,
    so only orders beyond k say anything about the slots: questions need M > k orders (the
    ``random`` strategy with M = 2k, say; a Latin square alone cannot identify them)."""
    k = len(samples[0][0][0])
    if any(len(orders[0]) != k for orders, _ in samples):
        raise ValueError("every question must have the same number of passages")
    if all(len(orders) <= k for orders, _ in samples):
        raise ValueError("slot weights need more orders than passages per question (M > k)")
    prior = (k - 1) / 2 - np.arange(k)  # positive for the retriever's top ranks
    weights = default_weights(k)
    for _ in range(iterations):
        rows, targets, orientation = [], [], 0.0
        for orders, y in samples:
            u, b = _ridge(design_matrix(orders, weights), np.asarray(y, dtype=float),
                          ridge_lambda)
            rows.append(u[np.asarray(orders, dtype=int)])  # row m, column j: u of slot j
            targets.append(np.asarray(y, dtype=float) - b)
            orientation += float(u @ prior)
        fitted = _ridge_model(1e-6, fit_intercept=False).fit(
            np.vstack(rows), np.concatenate(targets)).coef_
        fitted = -fitted if orientation < 0 else fitted
        span = fitted.max() - fitted.min()
        if span <= 1e-12:
            raise ValueError("the outcomes do not depend on the passage order: no slot "
                             "weights can be fitted from these samples")
        fitted = (fitted - fitted.min()) / span
        converged = np.abs(fitted - weights).max() < tol
        weights = fitted
        if converged:
            break
    return weights

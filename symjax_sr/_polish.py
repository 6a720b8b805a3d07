"""The final hall of fame's constants at their least-squares optimum.

The search fits constants on some members (`optimize_probability` per iteration), and a
hall-of-fame entry that came straight from a mutation keeps the constants the mutation
gave it: `x1*(alpha*cos(omega*t) + 1.25)*cos(omega*t)` is a best-per-complexity entry whose
shift was never fitted (its fitted form is the exact formula). After a search, every entry
under the squared error gets its constants refitted on the data (Levenberg-Marquardt in
float64, `_snap.refit`), and keeps them where the loss falls by more than rounding.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from ._evaluate import l2_loss
from ._operators import CONST, OperatorSet
from ._snap import REFIT_MAX_CONSTANTS, host_loss, loss_atol, refit, with_pareto
from ._tree import Tree

__all__ = ["MAX_ROWS", "RTOL", "polish_entries"]

#: Rows the refit sees at most (evenly spaced); the kept loss is on every row.
MAX_ROWS = 5000
#: Relative fall of the loss (beyond `_snap.loss_atol`) below which the constants found stay.
RTOL = 1e-6


def polish_entries(entries: list, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
                   operators: OperatorSet, elementwise_loss: Callable | None = None) -> list:
    """Hall-of-fame entries (simplest first) with their constants refitted under the
    squared error (entries with 1 to `_snap.REFIT_MAX_CONSTANTS` constants); an entry
    whose loss on these rows falls by more than `RTOL` (relative) and `_snap.loss_atol`
    carries the new constants and loss, and the Pareto flags are recomputed. Any other
    loss: the entries as they are."""
    if elementwise_loss not in (None, l2_loss):
        return entries
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    w = None if weights is None else np.asarray(weights, np.float64)
    subset = len(y) > MAX_ROWS
    if subset:
        rows = np.linspace(0, len(y) - 1, MAX_ROWS).round().astype(int)
        Xs, ys, ws = X[rows], y[rows], None if w is None else w[rows]
    else:
        Xs, ys, ws = X, y, w
    atol = loss_atol(X, y, w, operators, None)
    out = []
    for e in entries:
        tree = e.tree
        free = [] if not isinstance(tree, Tree) or e.params is not None else \
            [i for i in range(len(tree.op)) if tree.op[i] == CONST]
        if not 1 <= len(free) <= REFIT_MAX_CONSTANTS:
            out.append(e)
            continue
        before = host_loss(tree, X, y, w, operators, None)  # float64, on every row
        start = host_loss(tree, Xs, ys, ws, operators, None) if subset else before
        if not math.isfinite(start):
            out.append(e)
            continue
        fitted, _ = refit(tree, free, Xs, ys, ws, operators, start)
        if fitted is tree:
            out.append(e)
            continue
        loss = host_loss(fitted, X, y, w, operators, None)
        # a fall within rounding keeps the constants found: where they are not identified
        # (`c*d2/(c*n + c*d2/d1)`) the refit would only move them along the flat direction
        keep = loss < before * (1.0 - RTOL) - atol
        out.append(dataclasses.replace(e, tree=fitted, loss=loss) if keep else e)
    if all(a is b for a, b in zip(out, entries, strict=True)):
        return out
    return with_pareto(out)

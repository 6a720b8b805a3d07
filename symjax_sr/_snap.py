"""Fitted constants that are a closed form: multiples of pi, and powers of e.

The search fits constants in floating point, so a phase that is pi/2 comes out as
1.5707958 and `cos(x - 1.5707958)` hides `sin(x)`; a base of 1.6487213 hides
`exp(x/2)`. After a search, every hall-of-fame constant within `CLOSE` (relative) of
`k*pi/q` (q in 1, 2, 3, 4, 6; |k| <= 24) or of `+-exp(k/q)` (q in 1..4; |k/q| <= 4) is
set to that value when the expression's loss on the training data stays within
`LOSS_RTOL` (relative) or `LOSS_ATOL` times the loss of the best constant; `tree_to_sympy`
then writes the value as the closed form (`pi/2`), which SymPy simplifies
(`cos(x - pi/2)` is `sin(x)`). Integers and fractions need no such step: they print as
what they are once rounded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import sympy

from ._numpy_eval import evaluate_tree_numpy
from ._operators import CONST, OperatorSet
from ._tree import Tree

__all__ = ["CLOSE", "LOSS_ATOL", "LOSS_RTOL", "closed_form", "snap_entries"]

CLOSE = 1e-4
LOSS_RTOL = 1e-3
LOSS_ATOL = 1e-10
_DENOMINATORS = (1, 2, 3, 4, 6)
_MAX_MULTIPLE = 24
_E_DENOMINATORS = (1, 2, 3, 4)
_MAX_E_POWER = 4


def _candidates(v: float) -> list[tuple[float, Callable[[], sympy.Expr]]]:
    """Closed forms within `CLOSE` of `v`, nearest first: (value, its SymPy form). The
    SymPy form is built on demand: `tree_to_sympy` asks for every constant it prints."""
    if not math.isfinite(v) or v == 0.0:
        return []
    out = []
    for q in _DENOMINATORS:
        k = round(v * q / math.pi)
        if k != 0 and abs(k) <= _MAX_MULTIPLE and math.gcd(k, q) == 1:
            out.append((k * math.pi / q, lambda k=k, q=q: sympy.pi * sympy.Rational(k, q)))
    sign, t = (1 if v > 0 else -1), math.log(abs(v))
    for q in _E_DENOMINATORS:
        k = round(t * q)
        if k != 0 and abs(k) <= _MAX_E_POWER * q and math.gcd(k, q) == 1:
            out.append((sign * math.exp(k / q),
                        lambda k=k, q=q: sign * sympy.exp(sympy.Rational(k, q))))
    near = [(c, e) for c, e in out if abs(c - v) <= CLOSE * abs(v)]
    return sorted(near, key=lambda ce: abs(ce[0] - v))


def closed_form(v: float) -> sympy.Expr | None:
    """The closed form whose float32 value is `v`'s, if any: how a snapped constant (or one
    fitted to within float32 precision of it) is recognised when printed."""
    for c, expr in _candidates(float(v)):  # none unless |v| is within e^-4 .. 24*pi
        if np.float32(c) == np.float32(v):
            return expr()
    return None


def _loss(tree: Tree, X, y, weights, operators: OperatorSet, elementwise_loss: Callable | None):
    pred, ok, _ = evaluate_tree_numpy(tree, X, operators)
    if not ok.all():
        return math.inf
    if elementwise_loss is None:
        per_row = (pred - y) ** 2
    else:
        per_row = np.asarray(elementwise_loss(pred, y), np.float64)
    value = float(np.mean(per_row) if weights is None else np.sum(weights * per_row) / np.sum(weights))
    return value if math.isfinite(value) else math.inf


def snap_entries(entries: list, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
                 operators: OperatorSet, elementwise_loss: Callable | None = None) -> list:
    """Hall-of-fame entries (simplest first) with their closed-form constants snapped, each
    kept only where the loss allows it (see the module docstring); a changed entry carries
    its new loss (float64, on these rows) and the Pareto flags are recomputed."""
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    w = None if weights is None else np.asarray(weights, np.float64)
    mean = float(np.sum(w * y) / np.sum(w)) if w is not None else float(np.mean(y))
    floor = _loss(Tree(np.array([CONST], np.int32), np.zeros(1, np.int32), np.array([mean])),
                  X, y, w, operators, elementwise_loss)
    atol = LOSS_ATOL * (floor if math.isfinite(floor) else 0.0)
    out = []
    for e in entries:
        tree = e.tree
        if not isinstance(tree, Tree) or e.params is not None:
            out.append(e)
            continue
        slots = [(i, _candidates(float(v))) for i, v in enumerate(tree.value) if tree.op[i] == CONST]
        slots = [(i, c) for i, c in slots if c]
        if not slots:
            out.append(e)
            continue
        before = _loss(tree, X, y, w, operators, elementwise_loss)
        if not math.isfinite(before):
            out.append(e)
            continue
        value, after, changed = tree.value.copy(), before, False
        for i, cands in slots:
            for c, _ in cands:
                trial = value.copy()
                trial[i] = c
                loss = _loss(Tree(tree.op, tree.arg, trial), X, y, w, operators, elementwise_loss)
                if loss <= before * (1 + LOSS_RTOL) + atol:
                    value, after, changed = trial, loss, True
                    break
        out.append(dataclasses.replace(e, tree=Tree(tree.op, tree.arg, value), loss=after)
                   if changed else e)
    if all(a is b for a, b in zip(out, entries, strict=True)):
        return out
    best = math.inf
    for k, e in enumerate(out):
        out[k] = dataclasses.replace(e, pareto=bool(e.loss < best))
        best = min(best, e.loss)
    return out

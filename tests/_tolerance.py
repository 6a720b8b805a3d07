"""The tolerance float kernels are held to against the float64 NumPy reference.

A row's bound is `4 * spread + rel * |ref64| + 1e-30`, where `spread` is the largest
deviation of float64 runs whose operands and results were perturbed by a relative
`delta` (the backward-error model of rounding): one run pushing everything up, one
pushing everything down, four random. For float32 data the reference first flushes
subnormal inputs to zero, as XLA:CPU does; and since XLA:CPU also flushes subnormal
results, a product or square of an input below sqrt(tiny) (~1e-19) may come out as 0
inside a kernel or inside an operator's own formula, so one more run sets such inputs
to 0. Not every XLA:CPU operation flushes its operands, though (`pow(0, -1e-45)` is
inf there, not `0^0 = 1`), so one more run keeps the subnormals. A row's non-finite
flag is "stable" when no perturbed run changes it.
"""

from __future__ import annotations

import numpy as np

import symjax_sr as sr
from symjax_sr._numpy_eval import evaluate_tree_numpy


class _Fixed:
    """A stand-in generator whose uniform draws are all `sign` (one-sided perturbation)."""

    def __init__(self, sign):
        self.sign = sign

    def uniform(self, low, high, n):
        return np.full(n, self.sign)


def _flush_below(tree, X, tiny):
    value = np.where(np.abs(tree.value) < tiny, 0.0, tree.value).astype(tree.value.dtype)
    return sr.Tree(tree.op, tree.arg, value), np.where(np.abs(X) < tiny, 0.0, X).astype(X.dtype)


def flush_subnormals(tree, X):
    """The inputs a float32 XLA:CPU kernel really computes with (subnormals flushed to 0)."""
    return _flush_below(tree, X, np.finfo(np.float32).tiny)


def reference_bound(tree, X, ops, delta=1e-6, rel=1e-5):
    """`(ref64, ok64, bound, stable)` per row for `tree` on `X`."""
    unflushed = (tree, X)
    if X.dtype == np.float32:
        tree, X = flush_subnormals(tree, X)
    ref64, ok64, _ = evaluate_tree_numpy(tree, X, ops)
    spread = np.zeros(len(X))
    stable = np.ones(len(X), bool)
    runs = [
        evaluate_tree_numpy(tree, X, ops, perturb=delta, rng=rng)
        for rng in [_Fixed(1.0), _Fixed(-1.0)] + [np.random.default_rng(i) for i in range(4)]
    ]
    if X.dtype == np.float32:
        runs.append(evaluate_tree_numpy(*_flush_below(tree, X, np.sqrt(np.finfo(np.float32).tiny)), ops))
        runs.append(evaluate_tree_numpy(*unflushed, ops))
    for p, pok, _ in runs:
        stable &= pok == ok64
        spread = np.maximum(spread, np.where(pok & ok64, np.abs(p - ref64), np.inf))
    return ref64, ok64, 4 * spread + rel * np.abs(ref64) + 1e-30, stable


def within_tolerance(tree, X, got, ok_got, ops, delta=1e-6, rel=1e-5):
    """Whether every row where both sides are ok is within the bound; and the bad rows."""
    ref64, ok64, bound, _ = reference_bound(tree, X, ops, delta, rel)
    both = ok_got & ok64 & np.isfinite(bound)
    bad = both & ~(np.abs(got - ref64) <= bound)
    return not bad.any(), np.flatnonzero(bad)

"""Fitted constants that are a closed form: multiples of pi, powers of e, small fractions.

The search fits constants in floating point, so a phase that is pi/2 comes out as
1.5707958 and `cos(x - 1.5707958)` hides `sin(x)`; a base of 1.6487213 hides
`exp(x/2)`; on noisy data an exponent that is 2 comes out as 2.001. After a search, every
hall-of-fame constant within `CLOSE` (relative) of `k*pi/q` (q in 1, 2, 3, 4, 6;
|k| <= 24) or of `+-exp(k/q)` (q in 1..4; |k/q| <= 4), or within `FRACTION_CLOSE` of `k/q`
(q in 1..4; |k/q| <= 10), or else at 0 (a shift or term the data do not need: `q2 - 0.0037`
on noisy data), is set to that value when the data do not ask for the fitted one:

- under the squared error, when the Bayesian information criterion does not grow: a
  snapped constant is one free parameter less, worth a loss `n^(1/n)` times larger on
  `n` rows (a factor of 1.012 on 500 rows), plus `LOSS_ATOL` times the loss of the best
  constant (rounding at the data's scale: on noise-free data the fit's loss is at rounding
  level, and any real change of a constant multiplies it);
- under any other loss, when the loss stays within `LOSS_RTOL` (relative) or the same
  `LOSS_ATOL`.

Under the squared error, a snap that fails on its own is tried once more with the
expression's other free constants refitted to it (`refit`: Levenberg-Marquardt in
float64): dropping the shift of `c*(q2 - 0.0037)` moves the best `c`, and the BIC
compares the simpler model at its own best fit, not at the richer model's constants.

`tree_to_sympy` writes a pi or e value as the closed form (`pi/2`), which SymPy
simplifies (`cos(x - pi/2)` is `sin(x)`); fractions print as what they are.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import sympy

from ._evaluate import l2_loss
from ._numpy_eval import evaluate_tree_numpy
from ._operators import CONST, OperatorSet
from ._tree import Tree

__all__ = ["CLOSE", "FRACTION_CLOSE", "LOSS_ATOL", "LOSS_RTOL", "REFIT_MAX_CONSTANTS", "closed_form",
           "host_loss", "loss_atol", "refit", "snap_entries", "with_pareto"]

CLOSE = 1e-4
FRACTION_CLOSE = 1e-2
LOSS_RTOL = 1e-3
LOSS_ATOL = 1e-10
_DENOMINATORS = (1, 2, 3, 4, 6)
_MAX_MULTIPLE = 24
_E_DENOMINATORS = (1, 2, 3, 4)
_MAX_E_POWER = 4
_FRACTION_DENOMINATORS = (1, 2, 3, 4)
_MAX_FRACTION = 10
_REFIT_STEPS = 12
REFIT_MAX_CONSTANTS = 8


def _fractions(v: float) -> list[float]:
    """`k/q` within `FRACTION_CLOSE` (relative) of `v`, nearest first."""
    if not math.isfinite(v) or v == 0.0 or abs(v) > _MAX_FRACTION * (1 + FRACTION_CLOSE):
        return []
    out = {k / q for q in _FRACTION_DENOMINATORS if (k := round(v * q)) != 0}
    near = [c for c in out if abs(c - v) <= FRACTION_CLOSE * abs(v) and abs(c) <= _MAX_FRACTION]
    return sorted(near, key=lambda c: abs(c - v))


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


def host_loss(tree: Tree, X, y, weights, operators: OperatorSet, elementwise_loss: Callable | None):
    """The training loss of `tree` in float64 NumPy (inf where it is not finite on a row)."""
    pred, ok, _ = evaluate_tree_numpy(tree, X, operators)
    if not ok.all():
        return math.inf
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is an infinite loss
        if elementwise_loss is None:
            per_row = (pred - y) ** 2
        else:
            per_row = np.asarray(elementwise_loss(pred, y), np.float64)
        value = float(np.mean(per_row) if weights is None else
                      np.sum(weights * per_row) / np.sum(weights))
    return value if math.isfinite(value) else math.inf


def refit(tree: Tree, free: list[int], X, y, w, operators: OperatorSet, loss: float):
    """`tree` with the constants at positions `free` refitted by Levenberg-Marquardt on
    the squared error (float64, forward-difference Jacobian), and its loss; `tree` and
    `loss` unchanged where no step lowers the loss."""
    sw = np.ones_like(y) if w is None else np.sqrt(w / np.sum(w) * len(y))

    def residual(value):
        pred, ok, _ = evaluate_tree_numpy(Tree(tree.op, tree.arg, value), X, operators)
        if not ok.all():
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            r = sw * (pred - y)
            return r if np.isfinite(r @ r) else None

    value = tree.value.astype(np.float64)
    r = residual(value)
    if r is None or not free:
        return tree, loss

    def jacobian(value, r):
        cols = []
        for j in free:
            h = 1e-7 * max(1.0, abs(value[j]))
            rj = residual(value + h * (np.arange(len(value)) == j))
            if rj is None:
                return None
            cols.append((rj - r) / h)
        return np.stack(cols, axis=1)

    with np.errstate(all="ignore"):  # a step into overflow is rejected, not reported
        damping = 1e-3
        for _ in range(_REFIT_STEPS):
            J = jacobian(value, r)
            if J is None:
                break
            JtJ, g = J.T @ J, J.T @ r
            improved = False
            while damping < 1e8:
                A = JtJ + damping * np.diag(np.maximum(np.diag(JtJ), 1e-12))
                try:
                    step = np.linalg.solve(A, -g)
                except np.linalg.LinAlgError:
                    damping *= 10.0
                    continue
                trial = value.copy()
                trial[free] += step
                rt = residual(trial)
                trial_loss = math.inf if rt is None else float(rt @ rt) / len(rt)
                if trial_loss < loss:
                    improved = loss - trial_loss > 1e-12 * loss
                    value, r, loss = trial, rt, trial_loss
                    damping = max(damping / 10.0, 1e-9)
                    break
                damping *= 10.0
            if not improved:
                break
    # back to the tree's precision, with the loss of what is kept
    out = Tree(tree.op, tree.arg, value.astype(tree.value.dtype))
    return out, host_loss(out, X, y, w, operators, None)


def loss_atol(X, y, w, operators: OperatorSet, elementwise_loss: Callable | None) -> float:
    """`LOSS_ATOL` times the loss of the best constant (the mean): a loss change below it
    is rounding, whatever the scale of `y`."""
    mean = float(np.sum(w * y) / np.sum(w)) if w is not None else float(np.mean(y))
    floor = host_loss(Tree(np.array([CONST], np.int32), np.zeros(1, np.int32), np.array([mean])),
                      X, y, w, operators, elementwise_loss)
    return LOSS_ATOL * (floor if math.isfinite(floor) else 0.0)


def _snap_values(v: float) -> list[float]:
    """What a fitted `v` may snap to, nearest first: closed forms, then fractions, then 0
    (a term the data do not need); none when `v` is one already, to float32 precision."""
    if not math.isfinite(v) or v == 0.0:
        return []
    closed = [c for c, _ in _candidates(v)]
    out = closed + [c for c in _fractions(v) if c not in closed]
    if any(np.float32(c) == np.float32(v) for c in out):
        return []
    return out + [0.0]


def snap_entries(entries: list, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
                 operators: OperatorSet, elementwise_loss: Callable | None = None) -> list:
    """Hall-of-fame entries (simplest first) with their constants snapped to closed forms,
    fractions or 0, each kept only where the data allow it (see the module docstring); a
    changed entry carries its new loss (float64, on these rows) and the Pareto flags are
    recomputed."""
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    w = None if weights is None else np.asarray(weights, np.float64)
    if elementwise_loss is l2_loss:  # what the regressor passes for the default loss
        elementwise_loss = None
    atol = loss_atol(X, y, w, operators, elementwise_loss)
    n = int(len(y) if w is None else np.count_nonzero(w > 0))
    # Loss factor one snapped constant may cost: the BIC's ln(n) per parameter against
    # n ln(loss) (squared error), or LOSS_RTOL (any other loss).
    per_constant = math.log(n) / n if elementwise_loss is None and n > 1 else math.log1p(LOSS_RTOL)
    out = []
    for e in entries:
        tree = e.tree
        if not isinstance(tree, Tree) or e.params is not None:
            out.append(e)
            continue
        slots = [(i, _snap_values(float(v))) for i, v in enumerate(tree.value) if tree.op[i] == CONST]
        slots = [(i, c) for i, c in slots if c]
        if not slots:
            out.append(e)
            continue
        before = host_loss(tree, X, y, w, operators, elementwise_loss)
        if not math.isfinite(before):
            out.append(e)
            continue
        value, after, snapped = tree.value.copy(), before, 0
        fixed = {i for i in range(len(value)) if tree.op[i] == CONST} - {i for i, _ in slots}
        may_refit = elementwise_loss is None and len(slots) <= REFIT_MAX_CONSTANTS
        for i, _ in slots:
            allowed = before * math.exp((snapped + 1) * per_constant) + atol
            # a refit may have moved this constant since the candidates were listed
            for c in _snap_values(float(value[i])):
                trial = value.copy()
                trial[i] = c
                t = Tree(tree.op, tree.arg, trial)
                loss = host_loss(t, X, y, w, operators, elementwise_loss)
                free = [j for j, _ in slots if j != i and j not in fixed]
                if loss > allowed and may_refit and free and math.isfinite(loss):
                    t, loss = refit(t, free, X, y, w, operators, loss)
                if loss <= allowed:
                    value, after, snapped = t.value.copy(), loss, snapped + 1
                    fixed.add(i)
                    break
        changed = snapped > 0
        out.append(dataclasses.replace(e, tree=Tree(tree.op, tree.arg, value), loss=after)
                   if changed else e)
    if all(a is b for a, b in zip(out, entries, strict=True)):
        return out
    return with_pareto(out)


def with_pareto(entries: list) -> list:
    """Host hall-of-fame entries (simplest first) with their Pareto flags recomputed after
    their losses changed: `_hall_of_fame.pareto_mask`'s rule, strictly better than every
    simpler entry."""
    out, best = [], math.inf
    for e in entries:
        out.append(dataclasses.replace(e, pareto=bool(e.loss < best)))
        best = min(best, e.loss)
    return out

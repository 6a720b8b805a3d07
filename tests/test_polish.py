"""The final refit of the hall of fame's constants (`_polish.py`), against scipy."""

import math

import numpy as np
import pytest
from scipy.optimize import least_squares

from symjax_sr._numpy_eval import evaluate_tree_numpy
from symjax_sr._operators import CONST, make_operator_set
from symjax_sr._polish import polish_entries
from symjax_sr._run import HofEntry
from symjax_sr._snap import host_loss
from symjax_sr._strings import parse_expression
from symjax_sr._tree import Tree

OPS = make_operator_set(["+", "-", "*", "/"], ["cos", "exp"])
NAMES = ["x1", "omega", "t", "alpha"]
_rng = np.random.default_rng(0)
X = _rng.uniform(1, 3, (400, 4))
x1, om, t, al = X.T
Y = x1 * (np.cos(om * t) + al * np.cos(om * t) ** 2)  # feynman I.50.26


def _entry(text, complexity, pareto=True):
    tree = parse_expression(text, OPS, NAMES, dtype=np.float32)
    return HofEntry(complexity=complexity, loss=host_loss(tree, X, Y, None, OPS, None),
                    tree=tree, pareto=pareto)


def _consts(tree):
    return [float(v) for o, v in zip(tree.op, tree.value, strict=True) if o == CONST]


def test_an_unfitted_shift_is_refitted_to_the_formula():
    """An entry as a mutation left it (the shift 1.25 never fitted) gets its least-squares
    constants: here the exact formula, its loss at rounding level, Pareto flags anew."""
    simple = _entry("x1*cos(omega*t)", 5)
    unfitted = _entry("x1*(alpha*cos(omega*t) + 1.25)*cos(omega*t)", 12)
    assert unfitted.loss > 0.1
    out = polish_entries([simple, unfitted], X, Y, None, OPS)
    assert out[0] == simple  # no constant: as it was
    assert _consts(out[1].tree) == pytest.approx([1.0], abs=1e-6)
    assert out[1].loss < 1e-10 and out[1].pareto
    assert out[1].loss == host_loss(out[1].tree, X, Y, None, OPS, None)


def test_the_refit_reaches_scipys_least_squares_optimum():
    """A nonlinear fit (`a*exp(b*t) + c*cos(omega)`, started away from the optimum) ends
    where scipy's Levenberg-Marquardt ends on the same residuals, under row weights."""
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 2.0, len(Y))
    y = 0.7 * np.exp(0.4 * t) - 1.3 * np.cos(om) + 0.05 * rng.standard_normal(len(Y))
    e = _entry("1.0*exp(0.5*t) + (-1.0)*cos(omega)", 9)
    tree = e.tree
    slots = [i for i, o in enumerate(tree.op) if o == CONST]

    def residual(c):
        value = tree.value.astype(np.float64).copy()
        value[slots] = c
        pred, _, _ = evaluate_tree_numpy(Tree(tree.op, tree.arg, value), X, OPS)
        return np.sqrt(w) * (pred - y)

    ref = least_squares(residual, np.asarray(_consts(tree)), method="lm", xtol=1e-14, ftol=1e-14)
    e = HofEntry(e.complexity, host_loss(tree, X, y, w, OPS, None), tree, True)
    out = polish_entries([e], X, y, w, OPS)[0]
    np.testing.assert_allclose(_consts(out.tree), ref.x, rtol=1e-4)
    ref_loss = float(np.sum(w * (residual(ref.x) / np.sqrt(w)) ** 2) / np.sum(w))
    assert out.loss == pytest.approx(ref_loss, rel=1e-5)


def test_fitted_entries_and_other_losses_stay_as_they_are():
    """An entry already at its optimum is returned as it is (no loss rise from float32
    rounding of the refit), and under a loss other than the squared error nothing is
    refitted."""
    fitted = _entry("x1*(alpha*cos(omega*t) + 1.0)*cos(omega*t)", 12)
    assert polish_entries([fitted], X, Y, None, OPS)[0] is fitted
    unfitted = _entry("x1*(alpha*cos(omega*t) + 1.25)*cos(omega*t)", 12)
    l1 = lambda p, y: np.abs(p - y)  # noqa: E731
    assert polish_entries([unfitted], X, Y, None, OPS, l1)[0] is unfitted


def test_many_rows_refit_on_a_subset_and_keep_the_full_loss():
    """Above `MAX_ROWS` rows the refit sees evenly spaced rows; the kept loss is on all."""
    import symjax_sr._polish as polish_mod

    rng = np.random.default_rng(2)
    Xb = rng.uniform(1, 3, (polish_mod.MAX_ROWS + 1234, 4))
    yb = Xb[:, 0] * (np.cos(Xb[:, 1] * Xb[:, 2]) + Xb[:, 3] * np.cos(Xb[:, 1] * Xb[:, 2]) ** 2)
    tree = parse_expression("x1*(alpha*cos(omega*t) + 1.25)*cos(omega*t)", OPS, NAMES,
                            dtype=np.float32)
    e = HofEntry(12, host_loss(tree, Xb, yb, None, OPS, None), tree, True)
    out = polish_entries([e], Xb, yb, None, OPS)[0]
    assert out.loss == host_loss(out.tree, Xb, yb, None, OPS, None) < 1e-10
    assert math.isfinite(out.loss)


def test_constants_that_are_not_identified_stay_where_the_search_put_them():
    """`c*d2/(c*n + c*d2/d1)` does not depend on `c`: where the search's constants are off
    by float32 rounding only, a refit would move them along the flat direction for a loss
    fall within rounding, so they stay; off by more, they are refitted."""
    names = ["d1", "d2", "n"]
    rng = np.random.default_rng(3)
    Xr = rng.uniform(1, 5, (300, 3))
    y = Xr[:, 1] / (Xr[:, 2] + Xr[:, 1] / Xr[:, 0])
    for text, refitted in [("1.3*d2/(1.3*n + 1.3000002*d2/d1)", False),
                           ("1.3*d2/(1.3*n + 1.3002*d2/d1)", True)]:
        tree = parse_expression(text, OPS, names, dtype=np.float32)
        e = HofEntry(11, host_loss(tree, Xr, y, None, OPS, None), tree, True)
        out = polish_entries([e], Xr, y, None, OPS)[0]
        assert (out is not e) == refitted
        assert out.loss <= e.loss

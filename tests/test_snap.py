"""Closed-form constants: snapping after a search, and how they print."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import sympy

from symjax_sr import OperatorSet, PySRRegressor, make_operator_set
from symjax_sr._evaluate import l2_loss
from symjax_sr._losses import parse_elementwise_loss
from symjax_sr._numpy_eval import evaluate_tree_numpy
from symjax_sr._operators import CONST, VAR
from symjax_sr._run import HofEntry
from symjax_sr._snap import _fractions, closed_form, host_loss, snap_entries
from symjax_sr._sympy import tree_to_sympy
from symjax_sr._tree import Tree

OPS = make_operator_set(["+", "-", "*"], ["cos"])
X0 = sympy.Symbol("x0")


def _cos_shift(c: float) -> Tree:
    """cos(x0 - c) in postfix."""
    minus, cos = OPS.opcode("-"), OPS.opcode("cos")
    return Tree(np.array([VAR, CONST, minus, cos], np.int32), np.zeros(4, np.int32),
                np.array([0.0, c, 0.0, 0.0], np.float32))


def _entry(tree: Tree, X, y) -> HofEntry:
    pred = np.cos(X[:, 0] - float(tree.value[1]))
    return HofEntry(4, float(np.mean((pred - y) ** 2)), tree, True)


@pytest.mark.parametrize("value, expected", [
    (math.pi / 2, sympy.pi / 2), (-3 * math.pi / 4, -3 * sympy.pi / 4), (2 * math.pi, 2 * sympy.pi),
    (math.e, sympy.E), (-1 / math.e, -sympy.exp(-1)), (5 * math.pi / 6, 5 * sympy.pi / 6),
    (math.exp(0.5), sympy.exp(sympy.Rational(1, 2))), (math.exp(-2.25), sympy.exp(-sympy.Rational(9, 4))),
])
def test_closed_form_recognises_float32_values(value, expected):
    assert closed_form(float(np.float32(value))) == expected
    assert closed_form(value) == expected


@pytest.mark.parametrize("value", [1.5707, 1.5709, 3.0, 0.1, 0.0, math.inf, math.nan, 1e-30])
def test_closed_form_rejects_other_values(value):
    assert closed_form(value) is None


def test_a_phase_of_pi_over_two_is_snapped_and_prints_as_sine():
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, (200, 1))
    y = np.sin(X[:, 0])
    fitted = np.float32(math.pi / 2 * (1 + 3e-7))  # what a float32 fit gives
    assert closed_form(float(fitted)) is None
    [snapped] = snap_entries([_entry(_cos_shift(float(fitted)), X, y)], X, y, None, OPS)
    assert snapped.tree.value[1] == np.float32(math.pi / 2)
    assert snapped.loss < 1e-12 and snapped.pareto
    assert sympy.simplify(tree_to_sympy(snapped.tree, OPS) - sympy.sin(X0)) == 0


def test_a_constant_the_data_tells_apart_is_kept():
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, (200, 1))
    c = 1.5709  # within 1e-4 of pi/2, but the noiseless data fit it exactly
    y = np.cos(X[:, 0] - c)
    entry = _entry(_cos_shift(c), X, y)
    [kept] = snap_entries([entry], X, y, None, OPS)
    assert kept is entry
    # with noise the data cannot tell c from pi/2: the loss rises by far less than 0.1%
    noisy = y + 0.1 * rng.normal(size=y.shape)
    [snapped] = snap_entries([_entry(_cos_shift(c), X, noisy)], X, noisy, None, OPS)
    assert snapped.tree.value[1] == np.float32(math.pi / 2)


def test_snapping_recomputes_the_pareto_flags():
    rng = np.random.default_rng(1)
    X = rng.uniform(-3, 3, (100, 1))
    y = np.sin(X[:, 0])
    simple = HofEntry(1, 0.5, Tree(np.array([VAR], np.int32), np.zeros(1, np.int32),
                                   np.zeros(1, np.float32)), True)
    shifted = _entry(_cos_shift(float(np.float32(math.pi / 2 * (1 + 3e-7)))), X, y)
    shifted = dataclasses.replace(shifted, pareto=False)  # as if it had lost to `simple`
    out = snap_entries([simple, shifted], X, y, None, OPS)
    assert out[0].tree is simple.tree and out[0].loss == simple.loss
    assert [e.pareto for e in out] == [True, True]


def test_a_search_reports_sine_as_a_shifted_cosine():
    """End to end: with `cos` only, sin(x0) is found as cos(x0 - c) with c at pi/2 in
    float32 (here the fit lands on it; `snap_entries` covers the fits that do not), and
    `sympy()` gives a formula SymPy proves equal to sin(x0): the final refit makes a larger
    entry exact as well, and "best" takes the simplest exact one."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, (100, 1))
    y = np.sin(X[:, 0])
    model = PySRRegressor(binary_operators=["+", "-", "*"], unary_operators=["cos"],
                          niterations=40, populations=4, population_size=20,
                          ncycles_per_iteration=30, maxsize=8, random_state=0,
                          early_stop_condition=1e-10, progress=False, verbosity=0,
                          temp_equation_file=True)
    model.fit(X, y)
    # the rounding level "best" uses: 1e-10 of the constant model's loss (the variance)
    assert model.fit_info_[0]["loss_floor"] == pytest.approx(1e-10 * np.var(y), rel=1e-9)
    expr = model.sympy()
    assert sympy.simplify(expr - sympy.sin(X0)) == 0, expr
    np.testing.assert_allclose(model.predict(X), y, atol=1e-5)


POW = make_operator_set(["*", "/", "^"], [])


def _inverse_power(coef: float, exponent: float) -> Tree:
    """coef * x0 / x1^exponent in postfix."""
    mul, div, pw = POW.opcode("*"), POW.opcode("/"), POW.opcode("^")
    return Tree(np.array([CONST, VAR, mul, VAR, CONST, pw, div], np.int32),
                np.array([0, 0, 0, 1, 0, 0, 0], np.int32),
                np.array([coef, 0, 0, 0, exponent, 0, 0], np.float32))


def _loss_entry(tree: Tree, X, y, ops) -> HofEntry:
    pred, _, _ = evaluate_tree_numpy(tree, X, ops)
    return HofEntry(tree.size, float(np.mean((pred - y) ** 2)), tree, True)


def _inverse_square_data(noise: float, n: int = 1000, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = rng.uniform(1, 5, (n, 2))
    y = 0.0796 * X[:, 0] / X[:, 1] ** 2
    return X, y + noise * np.sqrt(np.mean(y**2)) * rng.normal(size=n)


def test_an_exponent_fitted_under_noise_snaps_to_its_integer():
    """An exponent of 2.001 on data with 1% noise: the loss it saves over 2 (0.2%) is below
    what the BIC asks of a free parameter (0.7% on 1000 rows), so it becomes 2; the
    coefficient (no fraction within 1%) stays."""
    X, y = _inverse_square_data(0.01)
    [snapped] = snap_entries([_loss_entry(_inverse_power(0.07961, 2.001), X, y, POW)], X, y, None, POW)
    assert snapped.tree.value[4] == 2.0
    assert snapped.tree.value[0] == np.float32(0.07961)
    expr = tree_to_sympy(snapped.tree, POW)
    assert sympy.simplify(expr / (X0 / sympy.Symbol("x1") ** 2)).is_number


def test_an_exponent_the_data_tell_apart_is_kept():
    """Noise-free, 2.001 is what the data say; with noise, 2.01 costs more loss than the
    BIC allows a parameter (the prediction moves by up to 1.6%, the noise is 1%)."""
    X, y = _inverse_square_data(0.0)
    y = 0.07961 * X[:, 0] / X[:, 1] ** 2.001
    entry = _loss_entry(_inverse_power(0.07961, 2.001), X, y, POW)
    [kept] = snap_entries([entry], X, y, None, POW)
    assert kept is entry
    X, y = _inverse_square_data(0.01)
    y = y * X[:, 1] ** -0.01
    entry = _loss_entry(_inverse_power(0.0796, 2.01), X, y, POW)
    [kept] = snap_entries([entry], X, y, None, POW)
    assert kept is entry


@pytest.mark.parametrize("value, expected", [(2.001, 2.0), (-0.4985, -0.5), (0.3340, 1 / 3),
                                             (1.2488, 1.25), (9.95, 10.0)])
def test_fractions_near_a_fitted_value(value, expected):
    assert _fractions(value)[0] == pytest.approx(expected)


@pytest.mark.parametrize("value", [2.05, 0.0, 0.07961, 12.0, math.inf, math.nan])
def test_no_fraction_far_from_a_fitted_value(value):
    assert _fractions(value) == []


def test_a_shift_the_noisy_data_do_not_need_snaps_to_zero():
    """coef * (x0 - 0.0037) / x1^2 on data with 1% noise: the shift is below what the
    data resolve, so it becomes 0 (and the printed formula has no shift); without noise
    it is kept."""
    ops = make_operator_set(["-", "*", "/", "^"], [])
    sub, mul, div, pw = (ops.opcode(o) for o in ("-", "*", "/", "^"))
    tree = Tree(np.array([CONST, VAR, CONST, sub, mul, VAR, CONST, pw, div], np.int32),
                np.array([0, 0, 0, 0, 0, 1, 0, 0, 0], np.int32),
                np.array([0.0796, 0, 0.0037, 0, 0, 0, 2.0, 0, 0], np.float32))
    X, y = _inverse_square_data(0.01)
    [snapped] = snap_entries([_loss_entry(tree, X, y, ops)], X, y, None, ops)
    assert snapped.tree.value[2] == 0.0 and snapped.tree.value[0] == np.float32(0.0796)
    assert tree_to_sympy(snapped.tree, ops).free_symbols == {X0, sympy.Symbol("x1")}
    assert sympy.simplify(tree_to_sympy(snapped.tree, ops) / (X0 / sympy.Symbol("x1") ** 2)).is_number
    X, y = _inverse_square_data(0.0)
    y = 0.0796 * (X[:, 0] - 0.0037) / X[:, 1] ** 2
    entry = _loss_entry(tree, X, y, ops)
    [kept] = snap_entries([entry], X, y, None, ops)
    assert kept is entry


def _shifted_inverse_square(coef: float, shift: float) -> tuple[Tree, OperatorSet]:
    """coef * (x0 - shift) / x1^2 in postfix."""
    ops = make_operator_set(["-", "*", "/", "^"], [])
    sub, mul, div, pw = (ops.opcode(o) for o in ("-", "*", "/", "^"))
    tree = Tree(np.array([CONST, VAR, CONST, sub, mul, VAR, CONST, pw, div], np.int32),
                np.array([0, 0, 0, 0, 0, 1, 0, 0, 0], np.int32),
                np.array([coef, 0, shift, 0, 0, 0, 2.0, 0, 0], np.float32))
    return tree, ops


@pytest.mark.parametrize("elementwise_loss", [None, l2_loss])
def test_a_shift_is_dropped_when_the_coefficient_refitted_without_it_is_as_good(elementwise_loss):
    """The least-squares fit of coef * (x0 - shift) / x1^2 on 200 rows with 3% noise (the
    truth has no shift): zeroing the shift alone costs more than the BIC allows (the
    coefficient was fitted with it), zeroing it and refitting the coefficient does not. The
    kept coefficient is the least-squares one of the model without the shift. `l2_loss` is
    the squared error as the regressor passes it (`parse_elementwise_loss(None)`)."""
    assert parse_elementwise_loss(None) is l2_loss
    X, y = _inverse_square_data(0.03, n=200, seed=3)
    (a, b), *_ = np.linalg.lstsq(np.stack([X[:, 0], np.ones(len(y))], 1) / X[:, 1:2] ** 2, y,
                                 rcond=None)
    tree, ops = _shifted_inverse_square(a, -b / a)
    entry = _loss_entry(tree, X, y, ops)
    allowed = entry.loss * math.exp(math.log(len(y)) / len(y))
    zeroed = tree.value.copy()
    zeroed[2] = 0.0
    assert _loss_entry(Tree(tree.op, tree.arg, zeroed), X, y, ops).loss > allowed
    [snapped] = snap_entries([entry], X, y, None, ops, elementwise_loss)
    assert snapped.tree.value[2] == 0.0 and snapped.tree.value[6] == 2.0
    (best,), *_ = np.linalg.lstsq((X[:, 0] / X[:, 1] ** 2)[:, None], y, rcond=None)
    assert snapped.tree.value[0] == pytest.approx(best, rel=1e-5)
    assert snapped.loss <= allowed


def test_a_refit_does_not_drop_a_shift_the_data_need():
    """Without noise, a shift of 0.05 is what the data say: no coefficient makes up for it."""
    X, _ = _inverse_square_data(0.0, n=200, seed=3)
    y = 0.0796 * (X[:, 0] - 0.05) / X[:, 1] ** 2
    tree, ops = _shifted_inverse_square(0.0796, 0.05)
    entry = _loss_entry(tree, X, y, ops)
    [kept] = snap_entries([entry], X, y, None, ops)
    assert kept is entry


def test_an_overflowing_loss_is_infinite_without_a_warning():
    """Residuals whose square overflows float64: the loss is inf (the entry is kept as it
    is), and no RuntimeWarning escapes (warnings are errors in this suite)."""
    X = np.tile([1e155, 1e-5], (10, 1))  # 2 * x0 / x1^2 is 2e165, its square overflows
    y = np.zeros(10)
    tree, ops = _shifted_inverse_square(2.0003, 0.5)
    entry = HofEntry(tree.size, 1.0, tree, True)
    assert host_loss(tree, X, y, None, ops, None) == math.inf
    [kept] = snap_entries([entry], X, y, None, ops)
    assert kept is entry

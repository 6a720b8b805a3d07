"""The reference JAX evaluator against the independent NumPy evaluation.

Tolerance (float32 kernels): a row is compared where both sides are ok, and must satisfy
`|jax - ref64| <= 4 * spread + 1e-5 * |ref64| + 1e-30`, where `ref64` is the float64
NumPy value and `spread` the largest deviation of six float64 runs whose operator
operands and results were perturbed by a relative 1e-6 (~16 float32 ulps; the
backward-error model of rounding). Well-conditioned rows therefore get ~1e-5 relative;
rows where cancellation amplifies rounding get what rounding can explain, no more.
Non-finite flags must agree exactly with the float32 simulation (FTZ included).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _strategies import ALL_OPERATORS, datasets, trees
from _tolerance import within_tolerance
from hypothesis import given, settings
from hypothesis import strategies as st

import symjax_sr as sr
from symjax_sr._evaluate import ReferenceEvaluator, reduce_loss
from symjax_sr._numpy_eval import evaluate_tree_numpy
from symjax_sr._operators import CONST

L, K = 40, 24
OPS = ALL_OPERATORS


def tolerance_ok(tree, X, got, ok_got, ops=OPS, delta=1e-6, rel=1e-5):
    return within_tolerance(tree, X, got, ok_got, ops, delta, rel)


@given(st.lists(trees(), min_size=1, max_size=6), datasets())
def test_reference_matches_numpy_float32(tree_list, X):
    pop = sr.stack_trees(tree_list, L, K)
    pred, ok = sr.evaluate(pop, X, OPS)
    pred, ok = np.asarray(pred), np.asarray(ok)
    for i, t in enumerate(tree_list):
        _, ok32, _ = evaluate_tree_numpy(t, X, OPS, float32=True)
        np.testing.assert_array_equal(ok[i], ok32, err_msg=f"flags differ for tree {i}")
        assert np.all(np.isnan(pred[i][~ok[i]]))
        assert np.all(np.isfinite(pred[i][ok[i]]))
        good, rows = tolerance_ok(t, X, pred[i], ok[i])
        assert good, f"tree {i}: rows {rows} outside tolerance"


@given(st.lists(trees(), min_size=1, max_size=4), datasets())
@settings(max_examples=25)
def test_reference_matches_numpy_float64(tree_list, X):
    with jax.enable_x64(True):
        X64 = X.astype(np.float64)
        pop = sr.stack_trees([sr.Tree(t.op, t.arg, t.value.astype(np.float64)) for t in tree_list], L, K, np.float64)
        pred, ok = sr.evaluate(pop, X64, OPS)
        assert pred.dtype == jnp.float64
        pred, ok = np.asarray(pred), np.asarray(ok)
    for i, t in enumerate(tree_list):
        t64 = sr.Tree(t.op, t.arg, t.value.astype(np.float64))
        _, ok64, _ = evaluate_tree_numpy(t64, X64, OPS)
        np.testing.assert_array_equal(ok[i], ok64)
        good, rows = tolerance_ok(t64, X64, pred[i], ok[i], delta=1e-12, rel=1e-10)
        assert good, f"tree {i}: rows {rows} outside float64 tolerance"


@given(st.lists(trees(), min_size=1, max_size=6), datasets())
def test_loss_is_inf_exactly_when_a_row_fails(tree_list, X):
    pop = sr.stack_trees(tree_list, L, K)
    y = np.linspace(-1, 1, len(X)).astype(np.float32)
    loss = np.asarray(sr.evaluate_loss(pop, X, y, OPS))
    pred, ok = sr.evaluate(pop, X, OPS)
    for i in range(len(tree_list)):
        if np.asarray(ok[i]).all():
            expected = np.mean((np.asarray(pred[i], np.float64) - y) ** 2)
            if expected < 1e37:
                np.testing.assert_allclose(loss[i], expected, rtol=1e-5)
            elif expected > 1e39:  # the float32 loss overflows: non-finite -> inf
                assert loss[i] == np.inf
        else:
            assert loss[i] == np.inf
    assert not np.isnan(loss).any()


def test_weighted_loss():
    ops = sr.make_operator_set(["+", "*"], [])
    t = sr.Tree([1], [0], [0.0])  # x0
    pop = sr.stack_trees([t], 4, 2)
    X = np.array([[0.0], [1.0], [2.0]], np.float32)
    y = np.zeros(3, np.float32)
    w = np.array([1.0, 0.0, 3.0], np.float32)
    loss = sr.evaluate_loss(pop, X, y, ops, weights=w)
    np.testing.assert_allclose(loss, [(0 + 0 + 3 * 4) / 4])


@eqx.filter_jit
def _loss64(ev, op, arg, c, Xt, y):
    return ev.loss(sr.Population(op[None], arg[None], c[None]), Xt, y)[0]


_grad64 = eqx.filter_jit(jax.grad(_loss64, argnums=3))


@given(trees(max_leaves=6), datasets(rows=8))
@settings(max_examples=40)
def test_gradients_match_finite_differences(tree, X):
    with jax.enable_x64(True):
        t = sr.Tree(tree.op, tree.arg, tree.value.astype(np.float64))
        pop = sr.stack_trees([t], L, K, np.float64)
        Xt = jnp.asarray(X.T, jnp.float64)
        y = jnp.linspace(-1, 1, X.shape[0])
        ev = ReferenceEvaluator(OPS)
        op, arg = pop.op[0], pop.arg[0]

        def f(c):
            return float(_loss64(ev, op, arg, jnp.asarray(c), Xt, y))

        c0 = np.asarray(pop.const[0])
        base = f(c0)
        if not np.isfinite(base):
            return
        grad = np.asarray(_grad64(ev, op, arg, jnp.asarray(c0), Xt, y))
        n_const = int((t.op == CONST).sum())
        assert np.all(grad[n_const:] == 0), "unused constant slots must have zero gradient"
        for i in range(n_const):
            h = 1e-6 * max(1.0, abs(c0[i]))
            e = np.zeros_like(c0)
            e[i] = h
            up, down = f(c0 + e), f(c0 - e)
            central, fwd, bwd = (up - down) / (2 * h), (up - base) / h, (base - down) / h
            smooth = np.isfinite([central, fwd, bwd]).all() and abs(fwd - bwd) <= 1e-3 * max(
                abs(fwd), abs(bwd), 1e-8
            )
            if smooth and abs(central) < 1e12:
                # differentiable here: the gradient must be finite and match
                assert np.isfinite(grad[i])
                np.testing.assert_allclose(grad[i], central, rtol=1e-3, atol=1e-6 * max(1, base))


def test_gradients_finite_through_domain_guards(getkey):
    # Every member of a random population with a finite loss has a finite gradient:
    # the double-where guards keep unselected operators (log, sqrt, /, acosh...) out
    # of the backward pass.
    ops = sr.make_operator_set(["+", "-", "*", "/", "^"], ["log", "sqrt", "exp", "acosh", "atanh", "sin"])
    pop = sr.random_population(getkey(), 300, ops, 2, 24, 12, min_size=3, max_size=24)
    X = jax.random.uniform(getkey(), (2, 50), minval=0.1, maxval=2.0)
    y = jnp.sin(X[0])
    ev = ReferenceEvaluator(ops)
    loss, grad = jax.jit(jax.vmap(jax.value_and_grad(
        lambda c, o, a: ev.loss(sr.Population(o[None], a[None], c[None]), X, y)[0]
    )))(pop.const, pop.op, pop.arg)
    finite = np.isfinite(np.asarray(loss))
    assert finite.sum() > 20  # the test is not vacuous
    assert np.isfinite(np.asarray(grad)[finite]).all()


def test_no_recompile_for_second_population(getkey, monkeypatch):
    traces = []
    original = ReferenceEvaluator.predict

    def counting(self, pop, Xt):
        traces.append(1)
        return original(self, pop, Xt)

    monkeypatch.setattr(ReferenceEvaluator, "predict", counting)
    ops = sr.make_operator_set(["+", "*"], ["cos"])
    X = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    for _ in range(3):
        pop = sr.random_population(getkey(), 16, ops, 2, 12, 6)
        sr.evaluate(pop, X, ops)
    assert len(traces) == 1


def test_reduce_loss_never_nan():
    pred = jnp.array([[1.0, jnp.nan], [jnp.inf, 0.0], [1.0, 2.0]])
    ok = jnp.isfinite(pred)
    loss = reduce_loss(pred, ok, jnp.zeros(2), None)
    np.testing.assert_array_equal(loss, [np.inf, np.inf, 2.5])


# ----------------------------------------------------------------------------- bad input


def test_bad_data_errors():
    ops = sr.make_operator_set(["+"], [])
    pop = sr.stack_trees([sr.Tree([1], [0], [0.0])], 4, 2)
    with pytest.raises(ValueError, match="NaN or inf"):
        sr.evaluate(pop, np.array([[np.nan]]), ops)
    with pytest.raises(ValueError, match="2-D"):
        sr.evaluate(pop, np.zeros(3), ops)
    with pytest.raises(TypeError, match="numbers"):
        sr.evaluate(pop, np.array([["a"]]), ops)
    with pytest.raises(ValueError, match="feature"):
        sr.evaluate(sr.stack_trees([sr.Tree([1], [3], [0.0])], 4, 2), np.zeros((2, 2)), ops)
    with pytest.raises(ValueError, match="rows to match"):
        sr.evaluate_loss(pop, np.zeros((3, 1)), np.zeros(2), ops)


def test_unknown_evaluator():
    with pytest.raises(ValueError, match="Did you mean 'reference'"):
        sr.get_evaluator("referense", sr.make_operator_set(["+"], []))

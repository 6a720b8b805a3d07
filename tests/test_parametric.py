"""Parametric expressions (`ParametricExpressionSpec`, `category`): the evaluator against
NumPy on the features with each row's parameter values appended, the constant optimiser
against per-category least squares, and a fit that recovers per-category parameters."""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy
from _tolerance import reference_bound

from symjax_sr import (
    ConstantOptions,
    ParametricExpressionSpec,
    PySRRegressor,
    ReferenceEvaluator,
    SelectEvaluator,
    make_operator_set,
    optimize_constants,
    parse_expression,
    random_population,
)
from symjax_sr._parametric import ParametricEvaluator, encode_category
from symjax_sr._tree import Population, stack_trees

OPS = make_operator_set(["+", "-", "*", "/"], ["sin", "exp", "log"])
F, NP, C, K = 2, 2, 3, 4


def _xt(X, codes):
    """The search's layout: features, placeholder rows for the parameters, category last."""
    return jnp.asarray(np.concatenate([X, np.zeros((len(X), NP)), codes[:, None]], axis=1).T,
                       jnp.float32)


def _with_table(pop, table):
    return Population(pop.op, pop.arg, jnp.concatenate([pop.const, table], axis=1))


def test_encode_category():
    codes, classes = encode_category([7, 3, 7, 9], 4)
    np.testing.assert_array_equal(codes, [1, 0, 1, 2])
    np.testing.assert_array_equal(classes, [3, 7, 9])
    codes, _ = encode_category(np.array([9.0, 3.0]), 2, classes)
    np.testing.assert_array_equal(codes, [2, 0])
    with pytest.raises(ValueError, match=r"label\(s\) \[5\].*fitted: \[3, 7, 9\]"):
        encode_category([3, 5], 2, classes)
    with pytest.raises(ValueError, match="fractional"):
        encode_category([0.5, 1.0], 2)
    with pytest.raises(ValueError, match="one label per row"):
        encode_category([0, 1, 2], 2)
    with pytest.raises(TypeError, match="integer labels"):
        encode_category(np.array(["a", "b"]), 2)
    with pytest.raises(ValueError, match="max_parameters"):
        ParametricExpressionSpec(max_parameters=0)


@pytest.mark.parametrize("base", [ReferenceEvaluator, SelectEvaluator])
def test_parametric_evaluator_matches_numpy(base):
    rng = np.random.default_rng(0)
    N = 50
    X = rng.uniform(-2, 2, (N, F)).astype(np.float32)
    codes = rng.integers(0, C, N).astype(np.int32)
    pop = random_population(jax.random.key(1), 200, OPS, F + NP, 15, K, min_size=1, max_size=15)
    table = jnp.asarray(rng.normal(size=(200, NP * C)), jnp.float32)
    pop = _with_table(pop, table)
    ev = ParametricEvaluator(OPS, base(OPS), F, NP, C, K)
    pred, ok = jax.jit(ev.predict)(pop, _xt(X, codes))
    pred, ok = np.asarray(pred), np.asarray(ok)
    assert ((pop.op == 1) & (pop.arg >= F)).any()  # parameter leaves are exercised
    agree = 0
    for i in range(200):
        values = np.asarray(table[i]).reshape(NP, C)[:, codes].T
        X_ext = np.concatenate([X, values], 1).astype(np.float32)
        ref, ref_ok, bound, stable = reference_bound(pop.tree(i), X_ext, OPS)
        np.testing.assert_array_equal(ok[i][stable], ref_ok[stable], err_msg=f"member {i}")
        both = ok[i] & ref_ok
        assert np.all(np.abs(pred[i][both] - ref[both]) <= bound[both]), f"member {i}"
        assert np.all(np.isnan(pred[i][~ok[i]]))
        agree += both.all()
    assert agree > 100


def test_free_constants_marks_used_parameters():
    names = ["x0", "x1", "p1", "p2"]
    trees = [parse_expression(s, OPS, names) for s in ("p2 * x0 + 1.5", "x0 + x1", "p1")]
    pop = stack_trees(trees, 8, K)
    pop = _with_table(pop, jnp.zeros((3, NP * C)))
    free = np.asarray(ParametricEvaluator(OPS, ReferenceEvaluator(OPS), F, NP, C, K).free_constants(pop))
    np.testing.assert_array_equal(free[0], [1, 0, 0, 0] + [0] * C + [1] * C)
    np.testing.assert_array_equal(free[1], [0] * (K + NP * C))
    np.testing.assert_array_equal(free[2], [0] * K + [1] * C + [0] * C)


def test_optimiser_fits_per_category_parameters_like_least_squares():
    """`p1 * x0 + p2 * x1 + 0.5` is linear in the parameters: per category, LM must reach
    NumPy's least-squares solution (the expression's constant 0.5 fixed, as it is exact)."""
    rng = np.random.default_rng(3)
    N = 90
    X = rng.uniform(-2, 2, (N, F))
    codes = rng.integers(0, C, N).astype(np.int32)
    true = rng.normal(size=(NP, C))
    y = true[0, codes] * X[:, 0] + true[1, codes] * X[:, 1] + 0.5 + 0.01 * rng.normal(size=N)
    tree = parse_expression("p1 * x0 + p2 * x1 + 0.5", OPS, ["x0", "x1", "p1", "p2"])
    pop = _with_table(stack_trees([tree], 12, K), jnp.ones((1, NP * C), jnp.float32))
    ev = ParametricEvaluator(OPS, ReferenceEvaluator(OPS), F, NP, C, K)
    res = optimize_constants(pop, _xt(X, codes), jnp.asarray(y, jnp.float32), evaluator=ev,
                             key=jax.random.key(0), options=ConstantOptions(iterations=20))
    fitted = np.asarray(res.pop.const[0, K:]).reshape(NP, C)
    for c in range(C):
        rows = codes == c
        lsq, *_ = np.linalg.lstsq(X[rows], y[rows] - 0.5, rcond=None)
        np.testing.assert_allclose(fitted[:, c], lsq, rtol=1e-3, atol=1e-3)
    assert float(res.pop.const[0, 0]) == pytest.approx(0.5, abs=1e-3)


# ------------------------------------------------------------------------------ the fit

A = np.array([1.5, -0.7, 2.2])
B = np.array([0.3, 1.1, -0.5])
LABELS = np.array([10, 20, 30])


def _data(n=150, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, (n, 2))
    idx = rng.integers(0, 3, n)
    return X, A[idx] * np.sin(X[:, 0]) + B[idx], LABELS[idx]


@pytest.fixture(scope="module")
def fitted():
    X, y, cat = _data()
    m = PySRRegressor(expression_spec=ParametricExpressionSpec(max_parameters=2),
                      binary_operators=["+", "*"], unary_operators=["sin"], niterations=40,
                      populations=15, population_size=30, maxsize=10, random_state=0,
                      early_stop_condition=1e-10, deterministic=True,  # untimed kernel choice
                      progress=False, temp_equation_file=True, verbosity=0)
    return m.fit(X, y, category=cat)


def test_fit_recovers_per_category_parameters(fitted):
    X, y, cat = _data()
    best = fitted.get_best()
    assert best["loss"] < 1e-8, fitted.equations_
    np.testing.assert_array_equal(fitted.categories_, LABELS)
    np.testing.assert_allclose(fitted.predict(X, category=cat), y, atol=1e-3)
    # the SymPy form with each category's parameter values is that category's formula
    expr = fitted.sympy()
    assert {str(s) for s in expr.free_symbols} <= {"x0", "p1", "p2"}
    values = best["parameters"]
    assert values.shape == (2, 3)
    x0 = sympy.Symbol("x0")
    grid = np.linspace(-3, 3, 7)
    for c in range(3):
        sub = expr.subs({sympy.Symbol("p1"): values[0, c], sympy.Symbol("p2"): values[1, c]})
        got = sympy.lambdify(x0, sub, "numpy")(grid)
        np.testing.assert_allclose(got, A[c] * np.sin(grid) + B[c], atol=1e-3)


def test_predict_needs_known_categories(fitted):
    X, _, cat = _data(20, seed=1)
    with pytest.raises(ValueError, match="pass each row's `category`"):
        fitted.predict(X)
    with pytest.raises(ValueError, match=r"label\(s\) \[40\]"):
        fitted.predict(X, category=np.full(20, 40))


def test_exports_take_the_category(fitted):
    X, y, cat = _data(40, seed=2)
    pred = fitted.predict(X, category=cat)
    codes = np.searchsorted(fitted.categories_, cat)
    out = fitted.jax()
    f, params = out["callable"], out["parameters"]
    np.testing.assert_allclose(np.asarray(jax.jit(f)(jnp.asarray(X), params, codes)), pred,
                               rtol=1e-4, atol=1e-4)
    grad = jax.grad(lambda p: jnp.sum(f(jnp.asarray(X), p, codes) ** 2))(params)
    assert np.all(np.isfinite(np.asarray(grad[1]))) and np.any(np.asarray(grad[1]) != 0)
    mod = fitted.equinox()
    np.testing.assert_allclose(np.asarray(mod(jnp.asarray(X), codes)), pred, rtol=1e-4, atol=1e-4)
    with pytest.raises(NotImplementedError, match="jax\\(\\) or equinox\\(\\)"):
        fitted.pytorch()


def test_checkpoint_round_trip(fitted, tmp_path):
    X, _, cat = _data(30, seed=3)
    clone = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(clone.predict(X, category=cat), fitted.predict(X, category=cat))
    with pytest.raises(ValueError, match="holds no parameter values"):
        clone.refresh()
    clone.set_params(warm_start=True)
    X, y, cat = _data()
    with pytest.raises(ValueError, match="same category labels"):
        clone.fit(X, y, category=np.where(cat == 30, 40, cat))


def test_parametric_option_errors():
    X, y, cat = _data(30)
    plain = PySRRegressor(niterations=1, progress=False, temp_equation_file=True)
    with pytest.raises(ValueError, match="only used with `expression_spec=ParametricExpressionSpec"):
        plain.fit(X, y, category=cat)
    spec = ParametricExpressionSpec(max_parameters=1)
    with pytest.raises(ValueError, match="needs `category` in fit"):
        PySRRegressor(expression_spec=spec, niterations=1).fit(X, y)
    with pytest.raises(ValueError, match="`guesses` is not supported with ParametricExpressionSpec"):
        PySRRegressor(expression_spec=spec, guesses=["x0"], niterations=1).fit(X, y, category=cat)
    with pytest.raises(ValueError, match="`X_units` is not supported with ParametricExpressionSpec"):
        PySRRegressor(expression_spec=spec, niterations=1).fit(X, y, category=cat, X_units=["m", "s"])
    with pytest.raises(ValueError, match=r"\['p1'\] are the names of the parameters"):
        PySRRegressor(expression_spec=spec, niterations=1).fit(X, y, category=cat,
                                                               variable_names=["p1", "b"])
    with pytest.raises(TypeError, match="expression_spec"):
        PySRRegressor(expression_spec="parametric", niterations=1).fit(X, y)

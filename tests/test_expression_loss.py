"""`loss_function_expression`: a loss that sees the candidate as a JAX function of the data.

Reference: the derivative a loss takes with `jax.jvp` against central finite differences of
the NumPy float64 evaluation of the same trees; and a search whose loss matches slopes
finds an antiderivative, not the slopes the plain loss would fit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy

import symjax_sr as sr
from symjax_sr._evaluate import ReferenceEvaluator, get_evaluator
from symjax_sr._numpy_eval import evaluate_tree_numpy
from symjax_sr._random import numpy_rng_population

OPS = sr.make_operator_set(["+", "-", "*"], ["sin", "cos", "square", "log"])


def slope_loss(f, X, y, weights):
    """Mean squared error between df/dx0 and `y`."""
    e0 = jnp.zeros_like(X).at[:, 0].set(1.0)
    _, dfdx0 = jax.jvp(f, (X,), (e0,))
    return jnp.mean((dfdx0 - y) ** 2)


@pytest.mark.parametrize("name", ["reference", "switch", "select"])
def test_derivative_loss_matches_finite_differences(name):
    pop = numpy_rng_population(4, 48, OPS, 2, 24, 6, min_size=3, max_size=15)
    rng = np.random.default_rng(0)
    X = rng.uniform(0.2, 1.5, (40, 2))
    y = np.cos(X[:, 0])
    ev = get_evaluator(name, OPS) if name != "reference" else ReferenceEvaluator(OPS)
    Xt, y32 = jnp.asarray(X.T, jnp.float32), jnp.asarray(y, jnp.float32)
    got = np.asarray(jax.jit(lambda p: sr.population_loss(
        ev, p, Xt, y32, loss_function_expression=slope_loss))(pop))
    h = 1e-6
    compared = 0
    for i, tree in enumerate(pop.trees()):
        up, ok_up, _ = evaluate_tree_numpy(tree, X + [h, 0.0], OPS)
        down, ok_down, _ = evaluate_tree_numpy(tree, X - [h, 0.0], OPS)
        _, ok, _ = evaluate_tree_numpy(tree, X.astype(np.float32), OPS, float32=True)
        if not ok.all():
            assert np.isinf(got[i]), f"member {i} fails on a row but its loss is {got[i]}"
            continue
        if not (ok_up.all() and ok_down.all()):
            continue
        ref = np.mean(((up - down) / (2 * h) - y) ** 2)
        if ref > 1e4:  # badly scaled in float32; not a test of the derivative
            continue
        np.testing.assert_allclose(got[i], ref, rtol=2e-3, atol=1e-4, err_msg=f"member {i}")
        compared += 1
    assert compared >= 20, f"only {compared} members were comparable"
    assert not np.isnan(got).any()


def test_fit_matching_slopes_finds_an_antiderivative():
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, (64, 2))
    slopes = 3 * X[:, 0] ** 2  # measured d/dx0 of an unknown x0^3 + g(x1)
    common = dict(binary_operators=["+", "*"], unary_operators=[], niterations=8, populations=4,
                  population_size=30, maxsize=9, random_state=0, deterministic=True,
                  verbosity=0, progress=False, temp_equation_file=True)
    model = sr.PySRRegressor(loss_function_expression=slope_loss, **common)
    model.fit(X, slopes)
    x0 = sympy.Symbol("x0")
    best = model.sympy()
    deriv = sympy.lambdify([x0, sympy.Symbol("x1")], sympy.diff(best, x0), "numpy")
    np.testing.assert_allclose(np.broadcast_to(deriv(X[:, 0], X[:, 1]), slopes.shape), slopes,
                               rtol=1e-3, atol=1e-3, err_msg=str(best))
    # the plain loss on the same targets would fit the slopes themselves
    assert np.max(np.abs(model.predict(X) - slopes)) > 1.0, "fitted the slopes, not the antiderivative"


def test_loss_function_expression_validation():
    X, y = np.random.default_rng(0).uniform(-1, 1, (20, 1)), np.zeros(20)
    with pytest.raises(TypeError, match="JAX callable"):
        sr.PySRRegressor(loss_function_expression="my_loss(tree, dataset, options) = 0",
                         niterations=1).fit(X, y)
    with pytest.raises(ValueError, match="drop `elementwise_loss`"):
        sr.PySRRegressor(loss_function_expression=slope_loss, elementwise_loss="L1DistLoss()",
                         niterations=1).fit(X, y)

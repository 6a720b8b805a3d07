"""`guesses`: expressions that seed every island, their constants fitted first."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import symjax_sr as sr

SMALL = dict(binary_operators=["+", "*"], unary_operators=["exp"], niterations=1, populations=2,
             population_size=20, ncycles_per_iteration=5, maxsize=12, random_state=0,
             deterministic=True, verbosity=0, progress=False, temp_equation_file=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (100, 2))
    return X, 2.7 * np.exp(0.6 * X[:, 0]) + X[:, 1]


def test_a_guess_with_wrong_constants_is_fitted_and_kept(data):
    X, y = data
    seeded = sr.PySRRegressor(guesses=["1.0 * exp(1.0 * a) + b"], **SMALL)
    seeded.fit(X, y, variable_names=["a", "b"])
    best = seeded.equations_.iloc[seeded.equations_["loss"].idxmin()]
    assert best["loss"] < 1e-8, seeded.equations_
    consts = sorted(float(c) for c in best["sympy_format"].atoms(sympy.Float))
    np.testing.assert_allclose(consts, [0.6, 2.7], rtol=1e-4)
    # one short iteration does not find it unseeded
    plain = sr.PySRRegressor(**SMALL).fit(X, y, variable_names=["a", "b"])
    assert plain.equations_["loss"].min() > 1e-4


def test_sympy_guesses_and_one_list_per_output(data):
    X, y = data
    a, b = sympy.symbols("x0 x1")
    Y = np.stack([y, X[:, 0] * X[:, 1]], axis=1)
    model = sr.PySRRegressor(guesses=[[2.0 * sympy.exp(0.5 * a) + b], ["x0 * x1"]], **SMALL).fit(X, Y)
    assert model.equations_[0]["loss"].min() < 1e-8
    assert model.equations_[1]["loss"].min() < 1e-10


def test_bad_guesses(data):
    X, y = data
    with pytest.raises(ValueError, match="cannot be read.*x0, x1"):
        sr.PySRRegressor(guesses=["cos(x0)"], **SMALL).fit(X, y)
    with pytest.raises(ValueError, match="cannot be read"):
        sr.PySRRegressor(guesses=["x0 + x7"], **SMALL).fit(X, y)
    with pytest.raises(ValueError, match="more than `maxsize`"):
        sr.PySRRegressor(guesses=["x0*x0*x0*x0*x0*x0*x0"], **SMALL).fit(X, y)
    with pytest.raises(ValueError, match="2 lists but y has 1 outputs"):
        sr.PySRRegressor(guesses=[["x0"], ["x1"]], **SMALL).fit(X, y)
    with pytest.raises(ValueError, match="fraction_replaced_guesses"):
        sr.PySRRegressor(guesses=["x0"], fraction_replaced_guesses=0.1, **SMALL).fit(X, y)

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
        sr.PySRRegressor(guesses=["x0"], fraction_replaced_guesses=1.5, **SMALL).fit(X, y)


def _copies(model, guess: str) -> int:
    """Members of the final islands that are the guess itself."""
    pop = model.search_states_[0].pop
    want = sr.parse_expression(guess, model.operators_)
    n = 0
    for i in range(pop.op.shape[0]):
        for k in range(pop.op.shape[1]):
            op = np.asarray(pop.op[i, k])
            real = op != 0
            n += np.array_equal(op[real], want.op) and np.array_equal(np.asarray(pop.arg[i, k])[real], want.arg)
    return n


def test_guesses_migrate_into_the_islands(data):
    """A poor guess (`exp(x1)`) dies out of the islands by age, unless
    `fraction_replaced_guesses` brings it back at the end of every iteration."""
    X, y = data
    kw = {**SMALL, "niterations": 3}
    rare = sr.PySRRegressor(guesses=["exp(x1)"], **kw).fit(X, y)  # PySR's default 0.001
    often = sr.PySRRegressor(guesses=["exp(x1)"], fraction_replaced_guesses=0.5, **kw).fit(X, y)
    total = kw["populations"] * kw["population_size"]
    assert _copies(rare, "exp(x1)") <= 0.1 * total
    assert _copies(often, "exp(x1)") >= 0.3 * total

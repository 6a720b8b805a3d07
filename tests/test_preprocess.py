"""`select_k_features`, `denoise` and `Xresampled`: PySR's preprocessing before a search.

Every fit here searches 120 rows (features pad to one bucket), so the module compiles one
search program."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import symjax_sr as sr
from symjax_sr._preprocess import denoise

SMALL = dict(binary_operators=["+", "-", "*"], unary_operators=["cos"], niterations=6,
             populations=4, population_size=30, maxsize=12, random_state=0, deterministic=True,
             verbosity=0, progress=False, temp_equation_file=True)


def test_select_k_features_searches_the_informative_ones():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (120, 6))
    y = 2 * X[:, 1] + X[:, 4] * X[:, 4]
    names = [f"f{i}" for i in range(6)]
    model = sr.PySRRegressor(select_k_features=2, **dict(SMALL, random_state=1)).fit(
        X, y, variable_names=names)
    np.testing.assert_array_equal(model.selection_mask_, [False, True, False, False, True, False])
    assert model.n_features_in_ == 6
    used = {s.name for s in model.sympy().free_symbols}
    assert used <= {"f1", "f4"} and used, model.sympy()
    # every export takes the full X and reads the selected columns: the prediction is the
    # chosen formula evaluated by NumPy on those columns. Whether this small search ends on
    # the formula itself depends on the CPU's float bits (seed 1 does with AVX-512, and ends
    # on `2.07*f1 + 2.07*cos(f4 + 3.17) + 2.22` without); it must explain y either way, which
    # no formula missing f1 (at most 21% of the variance) or f4 (79%) does
    pred = model.predict(X)
    f = sympy.lambdify(sympy.symbols("f1 f4"), model.sympy(), "numpy")
    np.testing.assert_allclose(pred, f(X[:, 1], X[:, 4]) * np.ones(len(X)), rtol=1e-4, atol=1e-4)
    assert 1 - np.mean((pred - y) ** 2) / np.var(y) > 0.95, model.sympy()
    np.testing.assert_allclose(np.asarray(model.equinox()(X.astype(np.float32))), pred, rtol=1e-4, atol=1e-4)
    jx = model.jax()
    np.testing.assert_allclose(np.asarray(jx["callable"](X, jx["parameters"])), pred, rtol=1e-4, atol=1e-4)
    assert all({s.name for s in e.free_symbols} <= {"f1", "f4"} for e in model.equations_["sympy_format"])
    # without selection the same search may use any column
    assert sr.PySRRegressor(**SMALL).fit(X, y).selection_mask_ is None


def test_denoise_gives_the_search_a_smoother_target():
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, (120, 2))
    truth = X[:, 0] ** 2
    y = truth + rng.normal(0, 0.3, len(truth))
    _, smooth = denoise(X, y[:, None], random_state=0)
    assert np.mean((smooth[:, 0] - truth) ** 2) < 0.3 * np.mean((y - truth) ** 2)
    noisy = sr.PySRRegressor(**SMALL).fit(X, y)
    clean = sr.PySRRegressor(denoise=True, **SMALL).fit(X, y)
    # the loss is measured against the target the search saw: the denoised one fits far better
    assert clean.equations_["loss"].min() < 0.3 * noisy.equations_["loss"].min()
    assert np.mean((clean.predict(X) - truth) ** 2) < 0.3 * np.mean((y - truth) ** 2)


def test_xresampled_is_where_the_denoised_target_is_taken():
    rng = np.random.default_rng(2)
    X = rng.uniform(-2, 2, (80, 2))
    y = X[:, 0] * X[:, 1] + rng.normal(0, 0.05, 80)
    Xr = rng.uniform(-1, 1, (120, 2))
    Xr_out, Yr = denoise(X, y[:, None], Xr, random_state=0)
    assert Xr_out is Xr and Yr.shape == (120, 1)
    model = sr.PySRRegressor(denoise=True, **SMALL).fit(X, y, Xresampled=Xr)
    np.testing.assert_allclose(model.predict(Xr), Xr[:, 0] * Xr[:, 1], atol=0.1)


def test_preprocessing_errors():
    X, y = np.random.default_rng(0).uniform(-1, 1, (30, 3)), np.zeros(30)
    with pytest.raises(ValueError, match="only used with `denoise=True`"):
        sr.PySRRegressor(**SMALL).fit(X, y, Xresampled=X)
    with pytest.raises(ValueError, match="drop one of them"):
        sr.PySRRegressor(denoise=True, **SMALL).fit(X, y, Xresampled=X, weights=np.ones(30))
    with pytest.raises(ValueError, match="Xresampled` has 2 features"):
        sr.PySRRegressor(denoise=True, **SMALL).fit(X, y, Xresampled=X[:, :2])
    for k in (0, 4, 1.5, True):
        with pytest.raises(ValueError, match="select_k_features` must be an integer in 1..3"):
            sr.PySRRegressor(select_k_features=k, **SMALL).fit(X, y)

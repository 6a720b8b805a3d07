"""PySRRegressor as a PySR user drives it; shares one small search configuration so the
compiled iteration is reused across tests."""

import os
import warnings

import numpy as np
import pandas as pd
import pytest
import sympy

from symjax_sr import PySRRegressor

SMALL = dict(
    binary_operators=["+", "-", "*"],
    unary_operators=["cos"],
    populations=4,
    population_size=20,
    ncycles_per_iteration=20,
    maxsize=12,
    niterations=3,
    verbosity=0,
    progress=False,
    evaluator="switch",
)


def _data(seed=0, n=60):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2)).astype(np.float32)
    y = X[:, 0] * X[:, 0] + np.cos(X[:, 1])
    return X, y


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    X, y = _data()
    out = tmp_path_factory.mktemp("runs")
    model = PySRRegressor(**SMALL, random_state=0, output_directory=str(out))
    model.fit(X, y)
    return model, X, y


def test_pysr_user_script(fitted):
    model, X, y = fitted
    eq = model.equations_
    assert list(eq.columns[:6]) == ["complexity", "loss", "equation", "score", "sympy_format",
                                    "lambda_format"]
    assert eq["complexity"].is_monotonic_increasing
    assert eq["loss"].is_monotonic_decreasing  # Pareto front
    best = model.get_best()
    pred = model.predict(X)
    assert pred.shape == (len(X),)
    np.testing.assert_allclose(np.mean((pred - y) ** 2), best["loss"], rtol=1e-3, atol=1e-6)
    # every export of the chosen equation agrees with predict
    f = sympy.lambdify([sympy.Symbol("x0"), sympy.Symbol("x1")], model.sympy(), "numpy")
    np.testing.assert_allclose(np.broadcast_to(f(X[:, 0], X[:, 1]), pred.shape), pred, rtol=1e-5, atol=1e-6)
    jx = model.jax()
    np.testing.assert_allclose(np.asarray(jx["callable"](X, jx["parameters"])), pred, rtol=1e-4, atol=1e-5)
    assert isinstance(model.latex(), str) and "\\toprule" in model.latex_table()
    assert ">>>>" in repr(model)
    # hall_of_fame.csv in PySR's layout and columns
    path = os.path.join(model.output_directory_, model.run_id_, "hall_of_fame.csv")
    csv = pd.read_csv(path)
    assert list(csv.columns) == ["Complexity", "Loss", "Equation"]
    assert len(csv) == len(eq)


def test_model_selection(fitted):
    model, X, _ = fitted
    eq = model.equations_
    model.model_selection = "accuracy"
    assert model.get_best()["loss"] == eq["loss"].min()
    model.model_selection = "score"
    assert model.get_best()["score"] == eq["score"].max()
    model.model_selection = "best"
    assert model.predict(X, index=0).shape == (len(X),)


def test_determinism(tmp_path):
    X, y = _data()
    a = PySRRegressor(**SMALL, random_state=3, deterministic=True, output_directory=str(tmp_path)).fit(X, y)
    b = PySRRegressor(**SMALL, random_state=3, deterministic=True, output_directory=str(tmp_path)).fit(X, y)
    pd.testing.assert_frame_equal(a.equations_[["complexity", "loss", "equation"]],
                                  b.equations_[["complexity", "loss", "equation"]])


def test_pandas_and_multioutput(tmp_path):
    X, y = _data()
    df = pd.DataFrame(X, columns=["alpha", "beta_"])
    Y = np.stack([y, 2 * X[:, 0]], axis=1)
    model = PySRRegressor(**SMALL, random_state=0, output_directory=str(tmp_path)).fit(df, Y)
    assert model.nout_ == 2 and isinstance(model.equations_, list)
    assert model.predict(df).shape == (len(X), 2)
    assert list(model.feature_names_in_) == ["alpha", "beta_"]
    assert {s.name for s in model.sympy()[1].free_symbols} <= {"alpha", "beta_"}


def test_sklearn_contract():
    from sklearn.base import clone

    m = PySRRegressor(niterations=7, unary_operators=["cos"])
    params = m.get_params()
    assert params["niterations"] == 7 and params["populations"] == 31
    c = clone(m)
    assert c.get_params()["unary_operators"] == ["cos"]


def test_unknown_kwarg_suggests():
    with pytest.raises(TypeError, match="Did you mean `niterations`"):
        PySRRegressor(niteration=5)
    with pytest.raises(TypeError, match="unknown keyword"):
        PySRRegressor().set_params(bogus=1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(unary_operators=["cso"]), ValueError, "Did you mean 'cos'"),
        (dict(binary_operators=["cos"]), ValueError, "move it to `unary_operators`"),
        (dict(loss_function=lambda p, t, w: 0.0, elementwise_loss="L1DistLoss()"), ValueError, "drop one"),
        (dict(elementwise_loss="L3DistLoss()"), ValueError, "Unknown loss"),
        (dict(elementwise_loss="f(x, y) = (x - y)^2"), ValueError, "JAX callable"),
        (dict(model_selection="fastest"), ValueError, "model_selection"),
        (dict(constraints={"sin": 3}), ValueError, "not among the operators"),
        (dict(deterministic=True), ValueError, "random_state"),
        (dict(precision=8), ValueError, "precision"),
        (dict(populations=0), ValueError, "populations"),
        (dict(optimizer_algorithm="bfsg"), ValueError, "Did you mean"),
    ],
)
def test_option_errors(kwargs, error, match):
    X, y = _data()
    with pytest.raises(error, match=match):
        PySRRegressor(**{**SMALL, **kwargs}).fit(X, y)


def test_data_errors():
    X, y = _data()
    m = PySRRegressor(**SMALL)
    with pytest.raises(ValueError, match="NaN or inf"):
        m.fit(np.where(X > 1.9, np.nan, X), y)
    with pytest.raises(ValueError, match="NaN or inf"):
        m.fit(X, np.where(y > 2, np.inf, y))
    with pytest.raises(ValueError, match="rows"):
        m.fit(X, y[:-1])
    with pytest.raises(ValueError, match="clash"):
        m.fit(X, y, variable_names=["x", "gamma"])
    with pytest.raises(ValueError, match="clash"):
        m.fit(X, y, variable_names=["x", "cos"])
    with pytest.raises(ValueError, match="more than once"):
        m.fit(X, y, variable_names=["a", "a"])
    with pytest.raises(ValueError, match="identifiers"):
        m.fit(X, y, variable_names=["a b", "c"])
    with pytest.raises(TypeError, match="numbers"):
        m.fit(X, y.astype(str))
    with pytest.raises(ValueError, match="not supported yet"):
        m.fit(X, y, X_units=["m", "s"])


def test_julia_only_options_warn():
    X, y = _data()
    with pytest.warns(UserWarning, match="`procs` is ignored"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                PySRRegressor(**{**SMALL, "procs": 4, "niterations": 0}).fit(X, y)
            except Exception:  # noqa: BLE001 - only the warning matters here
                pass


def test_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        PySRRegressor().predict(np.zeros((2, 2)))


def test_from_config(tmp_path):
    m = PySRRegressor.from_config("quick", niterations=2)
    assert m.niterations == 2 and m.populations == 15
    bad = tmp_path / "bad.toml"
    bad.write_text("niteration = 3\n")
    with pytest.raises(TypeError, match="Did you mean `niterations`"):
        PySRRegressor.from_config(str(bad))
    with pytest.raises(ValueError, match="No config"):
        PySRRegressor.from_config("nonexistent")


def test_warm_start_continues_and_keeps_the_front(tmp_path):
    X, y = _data()
    model = PySRRegressor(**SMALL, random_state=0, warm_start=True, output_directory=str(tmp_path))
    model.fit(X, y)
    first = model.equations_["loss"].min()
    clock = int(model.search_states_[0].iteration)
    model.fit(X, y)
    assert int(model.search_states_[0].iteration) == clock + SMALL["niterations"]
    assert model.equations_["loss"].min() <= first
    model.set_params(maxsize=10)
    with pytest.raises(ValueError, match="warm_start"):
        model.fit(X, y)


def test_from_file_round_trip(fitted):
    model, X, _ = fitted
    run = os.path.join(model.output_directory_, model.run_id_)
    loaded = PySRRegressor.from_file(run, n_features_in=X.shape[1])
    pd.testing.assert_series_equal(loaded.equations_["equation"], model.equations_["equation"])
    np.testing.assert_allclose(loaded.predict(X), model.predict(X), rtol=1e-5, atol=1e-6)


def test_from_file_reads_a_pysr_run(tmp_path):
    # hall_of_fame.csv as PySR writes it (Julia number formats included)
    (tmp_path / "hall_of_fame.csv").write_text(
        "Complexity,Loss,Equation\n"
        "1,2.5,0.74f0\n"
        "5,0.9,\"((x0 * 2.5) + cos(x1))\"\n"
        "8,1.0e-12,\"((square(x0) * 1.0) + (cos(x1) * 2.5f0))\"\n"
    )
    model = PySRRegressor.from_file(str(tmp_path))
    assert list(model.equations_["complexity"]) == [1, 5, 8]
    X = np.array([[1.0, 0.0], [2.0, np.pi]])
    np.testing.assert_allclose(model.predict(X), X[:, 0] ** 2 + 2.5 * np.cos(X[:, 1]), rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="hall_of_fame.csv"):
        PySRRegressor.from_file(str(tmp_path / "nothing"))

"""PySRRegressor as a PySR user drives it; shares one small search configuration so the
compiled iteration is reused across tests."""

import os
import re
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import sympy
from test_logging import events as read_events

from symjax_sr import PySRRegressor, TensorBoardLoggerSpec, tree_to_string
from symjax_sr._run import hall_of_fame_entries

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
    eqx_module = model.equinox()
    np.testing.assert_allclose(np.asarray(eqx_module(X)), pred, rtol=1e-4, atol=1e-5)
    import torch

    torch_module = model.pytorch()
    with torch.no_grad():
        out = torch_module(torch.tensor(X, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(np.broadcast_to(out, pred.shape), pred, rtol=1e-4, atol=1e-5)
    assert isinstance(model.latex(), str) and "\\toprule" in model.latex_table()
    assert ">>>>" in repr(model)
    # hall_of_fame.csv in PySR's layout and columns
    path = os.path.join(model.output_directory_, model.run_id_, "hall_of_fame.csv")
    csv = pd.read_csv(path)
    assert list(csv.columns) == ["Complexity", "Loss", "Equation"]
    assert len(csv) == len(eq)


def _digits(equation: str) -> list[int]:
    """Significant digits of each number in an equation string."""
    numbers = re.findall(r"\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+", equation)
    return [len(n.split("e")[0].replace(".", "").lstrip("0").rstrip("0")) for n in numbers]


def test_print_precision_rounds_the_printout_only(fitted):
    model, _, _ = fitted
    eq = model.equations_
    exact = list(eq["equation"])
    long = [e for e in exact if max(_digits(e), default=0) > 2]  # constants with every digit
    assert long
    try:
        model.set_params(print_precision=2)
        shown = repr(model)
        for tree in eq["tree"]:
            rounded = tree_to_string(tree, model.operators_, ["x0", "x1"], precision=2)
            assert rounded in shown
            assert max(_digits(rounded), default=0) <= 2, rounded
        assert not any(e in shown for e in long)
        assert list(model.equations_["equation"]) == exact  # the table and files keep every digit
    finally:
        model.set_params(print_precision=5)
    with pytest.raises(ValueError, match="print_precision"):
        PySRRegressor(print_precision=0, niterations=1).fit(*_data())


def test_tensorboard_logs_a_fit(tmp_path):
    X, y = _data()
    spec = TensorBoardLoggerSpec(log_dir=str(tmp_path / "run"), log_interval=2)
    model = PySRRegressor(**{**SMALL, "niterations": 4}, random_state=0, logger_spec=spec,
                          temp_equation_file=True)
    model.fit(X, y)
    events = read_events(str(tmp_path / "run"))
    min_loss = [(s, v) for s, t, v in events if t == "search/data/summaries/min_loss"]
    assert [s for s, _ in min_loss] == [2, 4]
    assert min_loss[1][1] <= min_loss[0][1]
    # the search's hall of fame: the table's constants are snapped after the search
    front = [e for e in hall_of_fame_entries(model.search_states_[0]) if e.pareto]
    np.testing.assert_allclose(min_loss[1][1], min(e.loss for e in front), rtol=1e-6)
    tags = {t for _, t, _ in events}
    assert {"search/data/summaries/pareto_volume", "search/data/summaries/num_evals",
            "search/data/equations/front", "hparams"} <= tags
    for e in front:
        logged = [v for s, t, v in events
                  if t == f"search/data/equations/loss_complexity_{e.complexity}" and s == 4]
        np.testing.assert_allclose(logged, [e.loss], rtol=1e-6)
    text = [v for s, t, v in events if t == "search/data/equations/front" and s == 4][0]
    # header, rule, one row per equation of the search's front (the table's front can differ:
    # its constants are refitted and snapped after the search)
    assert text.count("\n") == len(front) + 1
    hparams = [v for _, t, v in events if t == "hparams"][0]
    assert f"`populations` = `{SMALL['populations']}`" in hparams
    # overwrite=False: a second fit writes next to the first, not over it
    model.fit(X, y)
    assert os.path.isdir(tmp_path / "run_1") and read_events(str(tmp_path / "run_1"))


def test_jax_and_torch_format_columns(fitted):
    model, X, _ = fitted
    model.set_params(output_jax_format=True, output_torch_format=True)
    try:
        eq = model.equations_
        row = eq.iloc[-1]
        f = row["jax_format"]
        np.testing.assert_allclose(np.asarray(f["callable"](X, f["parameters"])),
                                   row["lambda_format"](X), rtol=1e-4, atol=1e-5)
        assert len(list(row["torch_format"].parameters())) == 1
    finally:
        model.set_params(output_jax_format=False, output_torch_format=False)


def bad_mapping_op(x):
    return x


def test_unexportable_custom_operator_fails_before_the_search():
    X, y = _data()
    model = PySRRegressor(**{**SMALL, "unary_operators": [bad_mapping_op]},
                          extra_sympy_mappings={"bad_mapping_op": lambda x: "not sympy"})
    with pytest.raises(ValueError, match="bad_mapping_op"):
        model.fit(X, y)
    assert not hasattr(model, "equations_list_")


def test_model_selection(fitted):
    model, X, _ = fitted
    eq = model.equations_
    model.model_selection = "accuracy"
    assert model.get_best()["loss"] == eq["loss"].min()
    model.model_selection = "score"
    assert model.get_best()["score"] == eq["score"].max()
    model.model_selection = "best"
    assert model.predict(X, index=0).shape == (len(X),)


def test_best_takes_the_simplest_row_that_fits_to_rounding():
    """PySR's "best" (highest score within 1.5x of the lowest loss) on the front of
    `test_snap`'s sine search: 9.9e-16 is outside 1.5 x 1.3e-16, so PySR's rule takes the
    larger expression; with the fit's rounding level (1e-10 of the constant model's loss) both
    fit exactly and the simplest wins. Rows above the level keep PySR's rule."""
    from symjax_sr._selection import compute_scores, select_index

    loss = np.array([0.484, 0.474, 0.178, 9.9e-16, 1.3e-16])
    cplx = np.array([1, 2, 3, 4, 7])
    scores = compute_scores(loss, cplx)
    assert select_index(loss, scores, "best") == 4
    assert select_index(loss, scores, "best", loss_floor=4.7e-11) == 3
    assert select_index(loss, scores, "accuracy", loss_floor=4.7e-11) == 4
    noisy = np.array([0.484, 0.474, 0.178, 1e-3, 0.9e-3])
    assert select_index(noisy, compute_scores(noisy, cplx), "best", loss_floor=4.7e-11) == \
        select_index(noisy, compute_scores(noisy, cplx), "best") == 3


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
    with pytest.raises(ValueError, match="y to be passed"):
        m.fit(X, None)

    with pytest.raises(ValueError, match="only used with `expression_spec=ParametricExpressionSpec"):
        m.fit(X, y, category=np.zeros(len(X), int))
    with pytest.raises(ValueError, match="Unknown unit"):
        m.fit(X, y, X_units=["m", "parsec_typo"])


def test_predict_errors(fitted):
    model, X, _ = fitted
    with pytest.raises(ValueError, match="expecting 2 features"):
        model.predict(X[:, :1])
    with pytest.raises(ValueError, match="Reshape your data"):
        model.predict(X[:, 0].tolist())
    with pytest.raises(TypeError, match="Sparse data"):
        import scipy.sparse

        model.predict(scipy.sparse.csr_matrix(X))


def test_julia_only_options_warn():
    X, y = _data()
    with pytest.warns(UserWarning, match="`turbo` is ignored"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                PySRRegressor(**{**SMALL, "turbo": True, "niterations": 0}).fit(X, y)
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


def test_from_file_round_trip(fitted, tmp_path):
    model, X, y = fitted
    run = os.path.join(model.output_directory_, model.run_id_)
    # our run directory: the checkpoint brings back the whole estimator, search state included
    loaded = PySRRegressor.from_file(run, warm_start=True)
    pd.testing.assert_series_equal(loaded.equations_["equation"], model.equations_["equation"])
    np.testing.assert_allclose(loaded.predict(X), model.predict(X), rtol=1e-5, atol=1e-6)
    clock = int(loaded.search_states_[0].iteration)
    loaded.set_params(output_directory=str(tmp_path)).fit(X, y)
    assert int(loaded.search_states_[0].iteration) == clock + SMALL["niterations"]
    # hall_of_fame.csv alone (no checkpoint): the equations come back
    (tmp_path / "csv_only").mkdir()
    shutil.copyfile(os.path.join(run, "hall_of_fame.csv"), tmp_path / "csv_only" / "hall_of_fame.csv")
    csv_only = PySRRegressor.from_file(str(tmp_path / "csv_only"), n_features_in=X.shape[1])
    pd.testing.assert_series_equal(csv_only.equations_["equation"], model.equations_["equation"])
    np.testing.assert_allclose(csv_only.predict(X), model.predict(X), rtol=1e-5, atol=1e-6)


def myop(x):
    import jax.numpy as jnp

    return 2.0 * jnp.sin(x)


def test_pickle_round_trip_with_custom_operator(tmp_path):
    import pickle

    X, y = _data()
    model = PySRRegressor(**{**SMALL, "unary_operators": ["cos", myop]},
                          extra_sympy_mappings={"myop": lambda x: 2 * sympy.sin(x)},
                          random_state=0, output_directory=str(tmp_path)).fit(X, y)
    loaded = pickle.loads(pickle.dumps(model))
    pd.testing.assert_series_equal(loaded.equations_["equation"], model.equations_["equation"])
    np.testing.assert_allclose(loaded.predict(X), model.predict(X), rtol=1e-6)
    assert loaded.extra_sympy_mappings["myop"](sympy.Symbol("z")) == 2 * sympy.sin(sympy.Symbol("z"))
    # the unpickled custom operator equals the original, so warm starts are allowed
    assert loaded.operators_ == model.operators_
    loaded.set_params(warm_start=True).fit(X, y)


_CALLS = []


def crash_on_second_iteration(loss, complexity):
    _CALLS.append(1)
    if len(_CALLS) > 1:
        raise RuntimeError("simulated crash")
    return False


def test_unpicklable_parameter_warns_and_the_fit_goes_on(tmp_path):
    X, y = _data()
    model = PySRRegressor(**SMALL, random_state=0, output_directory=str(tmp_path), run_id="r",
                          early_stop_condition=lambda loss, complexity: False)
    with pytest.warns(UserWarning, match="checkpoint.pkl"):
        model.fit(X, y)
    assert not (tmp_path / "r" / "checkpoint.pkl").exists()
    assert (tmp_path / "r" / "hall_of_fame.csv").exists() and len(model.equations_)


def test_checkpoint_during_search_keeps_the_equations(tmp_path, monkeypatch):
    import symjax_sr._regressor as reg

    monkeypatch.setattr(reg, "_CHECKPOINT_EVERY_S", 0.0)
    _CALLS.clear()
    X, y = _data()
    model = PySRRegressor(**SMALL, random_state=0, output_directory=str(tmp_path), run_id="run",
                          early_stop_condition=crash_on_second_iteration)
    with pytest.raises(RuntimeError, match="simulated crash"):
        model.fit(X, y)
    loaded = PySRRegressor.from_file(str(tmp_path / "run"))
    csv = pd.read_csv(tmp_path / "run" / "hall_of_fame.csv")
    assert list(loaded.equations_["equation"]) == list(csv["Equation"])
    assert np.isfinite(loaded.predict(X)).all()


def test_refresh_rereads_the_hall_of_fame(fitted, tmp_path):
    import copy

    model, X, _ = fitted
    m = copy.deepcopy(model)
    run = tmp_path / "r"
    run.mkdir()
    (run / "hall_of_fame.csv").write_text("Complexity,Loss,Equation\n3,0.5,\"(x0 * x0)\"\n")
    m.refresh(str(run))
    assert list(m.equations_["equation"]) == ["(x0 * x0)"]
    np.testing.assert_allclose(m.predict(X), X[:, 0] ** 2, rtol=1e-6)


def test_progress_bar_on_a_terminal(tmp_path, monkeypatch, capsys):
    import sys

    X, y = _data()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    PySRRegressor(**{**SMALL, "progress": True, "verbosity": 1}, random_state=0,
                  output_directory=str(tmp_path)).fit(X, y)
    err = capsys.readouterr().err
    assert f"{SMALL['niterations']}/{SMALL['niterations']}" in err and "best loss" in err
    PySRRegressor(**SMALL, random_state=0, output_directory=str(tmp_path)).fit(X, y)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""  # verbosity 0: silent


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

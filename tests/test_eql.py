"""EQL: units, layers, regularisers, phase schedule, extraction, regressor."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sympy
from sklearn.exceptions import NotFittedError

from symjax_sr import EQL, EQLLayer, EQLRegressor, l0_penalty, l1_penalty, l12_penalty
from symjax_sr.eql import (
    EQLPhases,
    eql_to_sympy,
    round_floats,
    threshold_mask,
    train,
    unit_names,
)
from symjax_sr.eql._units import EQL_UNITS


def _finite_tree(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree)
               if eqx.is_inexact_array(x))


# ------------------------------------------------------------------------ numerical safety


def test_gradients_finite_for_every_unit(getkey):
    # One layer with every unit; inputs that overflow exp and squares, divide by (almost)
    # zero, and leave the domains of log, sqrt, acosh...
    units = unit_names()
    layer = EQLLayer(3, units, key=getkey())
    X = jnp.array([[80.0, -80.0, 0.0], [0.0, 0.0, 0.0], [1e-30, -1e-30, 1e30],
                   [-1e30, 1e30, -3.0], [0.5, -0.5, 0.25]])

    @eqx.filter_jit
    def check(layer, x):
        def f(l, x):
            y, pen = l.forward(x)
            return jnp.sum(y) + pen

        value, grads = eqx.filter_value_and_grad(f)(layer, x)
        per_unit = jax.jacrev(lambda x: layer.forward(x)[0])(x)  # [units, 3]
        return value, grads, per_unit

    for scale in (1.0, 1e3, 1e-6, 0.0):
        layer_s = eqx.tree_at(lambda l: l.weight, layer, layer.weight * scale)
        for x in X:
            value, grads, per_unit = check(layer_s, x)
            bad = [u for u, row in zip(units, np.asarray(per_unit))
                   if not np.all(np.isfinite(row))]
            assert not bad, (bad, scale, x)
            assert bool(jnp.isfinite(value)), (scale, x)
            assert _finite_tree(grads), (scale, x)


def test_division_unit_thresholds_and_penalises(getkey):
    layer = EQLLayer(1, ["division"], division_threshold=0.1, key=getkey())
    layer = eqx.tree_at(lambda l: (l.weight, l.bias), layer,
                        (jnp.array([[0.0, 1.0]]), jnp.array([3.0, 0.0])))
    for d, expected, pen in ((2.0, 1.5, 0.0), (0.05, 0.0, 0.05), (-1.0, 0.0, 1.1), (0.0, 0.0, 0.1)):
        y, p = layer.forward(jnp.array([d]))
        np.testing.assert_allclose(y, [expected], rtol=1e-6)
        np.testing.assert_allclose(p, pen, rtol=1e-6)
        g = jax.grad(lambda l, x: jnp.sum(l.forward(x)[0]))(layer, jnp.array([d]))
        assert _finite_tree(g)


def test_gated_network_gradients_finite(getkey):
    net = EQL(2, 1, hidden_layers=2, units=["exp", "product", "sin"], division=True, gates=True,
              key=getkey())
    X = jnp.array([[50.0, -50.0], [0.0, 0.0], [1.0, 2.0]])

    def loss(m, key):
        return jnp.mean(jax.vmap(lambda x: jnp.sum(m(x, key=key)))(X)) + l0_penalty(m)

    g = eqx.filter_grad(loss)(net, getkey())
    assert _finite_tree(g)
    assert bool(jnp.any(g.layers[0].log_alpha != 0))


# ---------------------------------------------------------------------------- regularisers


def test_regularisers_match_numpy(getkey):
    net = EQL(2, 1, hidden_layers=1, units=["sin", "product"], key=getkey())
    params = [np.asarray(p, np.float64) for l in net.layers for p in (l.weight, l.bias)]
    np.testing.assert_allclose(l1_penalty(net), sum(np.abs(p).sum() for p in params), rtol=1e-5)
    a = 0.3  # wide enough that some weights fall in the smoothed region
    flat = np.concatenate([p.ravel() for p in params])
    assert np.any(np.abs(flat) < a)
    small = -(flat**4) / (8 * a**3) + 3 * flat**2 / (4 * a) + 3 * a / 8
    ref = np.where(np.abs(flat) < a, np.sqrt(small), np.sqrt(np.abs(flat))).sum()
    np.testing.assert_allclose(l12_penalty(net, a), ref, rtol=1e-5)
    # Continuous at |w| = a and finite gradient at w = 0.
    zero = eqx.tree_at(lambda m: m.layers[0].weight, net, jnp.zeros_like(net.layers[0].weight))
    assert _finite_tree(eqx.filter_grad(lambda m: l12_penalty(m, a))(zero))
    with pytest.raises(ValueError, match="gates=True"):
        l0_penalty(net)
    with pytest.raises(ValueError, match="no `EQLLayer`"):
        l1_penalty({"w": jnp.ones(3)})


# ---------------------------------------------------------------------------- schedule


def test_phase_schedule_and_threshold_mask():
    phases = EQLPhases(warmup_steps=3, regularised_steps=4, finetune_steps=2)
    lam = phases.regularisation(0.5)
    assert [float(lam(s)) for s in range(9)] == [0, 0, 0, 0.5, 0.5, 0.5, 0.5, 0, 0]
    opt = phases.optimizer(optax.sgd(0.1), threshold=0.2)
    params = {"w": jnp.array([0.1, -0.15, 1.0, -2.0])}
    state = opt.init(params)
    grads = {"w": jnp.array([0.0, 0.0, 1.0, 1.0])}
    history = []
    for _ in range(phases.total_steps):
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        history.append(np.asarray(params["w"]))
    # Before the mask step plain SGD; from it on the small entries are exactly 0.
    np.testing.assert_allclose(history[6][:2], [0.1, -0.15])
    np.testing.assert_array_equal(history[7][:2], [0.0, 0.0])
    np.testing.assert_array_equal(history[8][:2], [0.0, 0.0])
    np.testing.assert_allclose(history[8][2:], [1.0 - 0.9, -2.0 - 0.9], rtol=1e-5)
    with pytest.raises(ValueError, match="params"):
        threshold_mask(0.1, 0).update(grads, threshold_mask(0.1, 0).init(params))
    with pytest.raises(ValueError, match="warmup_steps"):
        EQLPhases(warmup_steps=-1, regularised_steps=1, finetune_steps=1)


# ---------------------------------------------------------------------------- extraction


@pytest.mark.parametrize("gates", [False, True])
def test_extraction_equals_network(gates, getkey):
    units = ["constant", "identity", "square", "sin", "cos", "exp", "sigmoid", "product", "tanh"]
    net = EQL(3, 2, hidden_layers=2, units=units, gates=gates, key=getkey())
    X = np.asarray(jax.random.uniform(getkey(), (64, 3), minval=-1.0, maxval=1.0))
    exprs = eql_to_sympy(net, ["a", "b", "c"])
    f = sympy.lambdify(sympy.symbols("a b c"), exprs, "numpy")
    ref = np.stack([np.broadcast_to(v, (64,)) for v in f(*X.T)], axis=1)
    np.testing.assert_allclose(np.asarray(jax.vmap(net)(jnp.asarray(X))), ref, rtol=2e-4, atol=2e-5)


def test_extraction_with_division_output(getkey):
    net = EQL(2, 1, hidden_layers=1, units=["identity", "sin", "product"], division=True,
              division_threshold=0.05, key=getkey())
    # Denominator = the identity unit = x0 + 0.5·x1 + 0.1, which changes sign in the box.
    hidden, out = net.layers
    net = eqx.tree_at(lambda n: (n.layers[0].weight, n.layers[0].bias, n.layers[1].weight,
                                 n.layers[1].bias), net,
                      (hidden.weight.at[:, 0].set(jnp.array([1.0, 0.5])),
                       hidden.bias.at[0].set(0.1),
                       out.weight.at[:, 1].set(jnp.array([1.0, 0.0, 0.0])),
                       out.bias.at[1].set(0.0)))
    X = np.asarray(jax.random.uniform(getkey(), (200, 2), minval=-1.0, maxval=1.0))
    (expr,) = eql_to_sympy(net)
    ref = sympy.lambdify(sympy.symbols("x0 x1"), expr, "numpy")(*X.T)
    out, pen = jax.vmap(net.forward)(jnp.asarray(X))
    inside = np.asarray(pen) == 0  # denominator above θ: the network is the formula
    assert 20 < inside.sum() < 180
    np.testing.assert_allclose(np.asarray(out)[inside, 0], ref[inside], rtol=2e-4, atol=2e-5)
    np.testing.assert_array_equal(np.asarray(out)[~inside, 0], 0.0)


def test_extraction_threshold_drops_small_weights(getkey):
    layer = EQLLayer(2, ["identity", "sin"], key=getkey())
    layer = eqx.tree_at(lambda l: (l.weight, l.bias), layer,
                        (jnp.array([[2.0, 0.001], [0.005, 3.0]]), jnp.array([0.002, 0.5])))
    x0, x1 = sympy.symbols("x0 x1")
    e = eql_to_sympy(layer, threshold=0.01)
    assert sympy.simplify(round_floats(e[0], 3) - 2 * x0) == 0
    assert sympy.simplify(round_floats(e[1], 3) - sympy.sin(3 * x1 + 0.5)) == 0
    assert eql_to_sympy(layer, threshold=0.0)[0].has(x1)


# ----------------------------------------------------------------- training inside models


class _Encoder(eqx.Module):
    """Linear -> EQL layer -> linear: an EQL layer as one layer of a bigger model."""

    inp: eqx.nn.Linear
    eql: EQLLayer
    out: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.inp = eqx.nn.Linear(2, 3, key=k1)
        self.eql = EQLLayer(3, ["identity", "sin", "product", "square"], key=k2)
        self.out = eqx.nn.Linear(4, 1, key=k3)

    def __call__(self, x):
        return self.out(self.eql(self.inp(x)))


def test_eql_layer_trains_inside_an_equinox_model(getkey):
    model = _Encoder(getkey())
    X = jax.random.uniform(getkey(), (128, 2), minval=-1.0, maxval=1.0)
    Y = (jnp.sin(X[:, 0]) + X[:, 0] * X[:, 1])[:, None]
    phases = EQLPhases(warmup_steps=300, regularised_steps=600, finetune_steps=100)
    before = float(jnp.mean((jax.vmap(model)(X) - Y) ** 2))
    res = train(model, X, Y, optimizer=phases.optimizer(optax.adam(1e-2), 1e-3),
                regularisation=phases.regularisation(1e-4), regulariser=l12_penalty,
                steps=phases.total_steps, key=getkey())
    assert not res.diverged and res.steps == phases.total_steps
    after = float(jnp.mean((jax.vmap(res.model)(X) - Y) ** 2))
    assert after < 0.02 * before, (before, after)
    assert not np.allclose(res.model.eql.weight, model.eql.weight)
    assert not np.allclose(res.model.inp.weight, model.inp.weight)


def test_train_reports_divergence(getkey):
    net = EQL(1, 1, hidden_layers=1, units=["exp", "square"], key=getkey())
    X = jnp.linspace(-1, 1, 32)[:, None]
    Y = jnp.full((32, 1), 1e30)  # the squared error overflows float32
    phases = EQLPhases(warmup_steps=10, regularised_steps=0, finetune_steps=0)
    res = train(net, X, Y, optimizer=optax.adam(1e-2), regularisation=phases.regularisation(0.0),
                regulariser=l1_penalty, steps=10, key=getkey())
    assert res.diverged and res.loss == np.inf
    model = EQLRegressor(hidden_layers=1, units=["exp"], warmup_steps=10, regularised_steps=0,
                         finetune_steps=0, max_restarts=1)
    with pytest.raises(RuntimeError, match="diverged after 1 restarts"):
        model.fit(np.linspace(-1, 1, 32)[:, None], np.full(32, 1e30))


# ---------------------------------------------------------------------------- regressor


def test_recovers_x2_plus_2sin():
    X = np.random.default_rng(0).uniform(-1, 1, (256, 1))
    y = X[:, 0] ** 2 + 2 * np.sin(X[:, 0])
    model = EQLRegressor(hidden_layers=1, units=["identity", "square", "sin", "product"],
                         warmup_steps=2000, regularised_steps=16000, finetune_steps=2000,
                         n_trials=3, random_state=0)
    model.fit(X, y, variable_names=["x"])
    x = sympy.Symbol("x")
    found = round_floats(model.sympy(), 2)
    assert sympy.simplify(found - (x**2 + 2 * sympy.sin(x))) == 0, found


def test_regressor_outputs_and_exports():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (128, 2))
    y = np.stack([X[:, 0] * X[:, 1], np.sin(X[:, 0]) + 0.5], axis=1)
    model = EQLRegressor(hidden_layers=1, units=["identity", "sin", "product"], warmup_steps=200,
                         regularised_steps=600, finetune_steps=200, random_state=0)
    with pytest.raises(NotFittedError):
        model.predict(X)
    model.fit(X, y)
    tables = model.equations_
    assert len(tables) == 2
    for t in tables:
        assert list(t.columns[:6]) == ["complexity", "loss", "equation", "score", "sympy_format",
                                       "lambda_format"]
        assert np.all(np.diff(t["complexity"]) > 0) and np.all(np.diff(t["loss"]) < 0)
    pred = model.predict(X)
    assert pred.shape == (128, 2)
    exprs = model.sympy()
    for j, e in enumerate(exprs):
        f = sympy.lambdify(sympy.symbols("x0 x1"), e, "numpy")
        np.testing.assert_allclose(np.broadcast_to(f(*X.T), (128,)), pred[:, j], rtol=1e-6,
                                   atol=1e-8)
    assert all(isinstance(s, str) and s for s in model.latex())
    assert "\\toprule" in model.latex_table()
    module = model.equinox()
    np.testing.assert_allclose(np.asarray(module(jnp.asarray(X, jnp.float32))), pred, rtol=1e-4,
                               atol=1e-4)
    jf = model.jax()[0]
    np.testing.assert_allclose(np.asarray(jf["callable"](X, jf["parameters"])), pred[:, 0],
                               rtol=1e-4, atol=1e-4)
    assert isinstance(model.network_, EQL)
    r2 = 1 - np.sum((pred - y) ** 2, 0) / np.sum((y - y.mean(0)) ** 2, 0)
    assert np.all(r2 > 0.99), r2


def test_regressor_validation_errors():
    X, y = np.zeros((10, 1)), np.zeros(10)
    with pytest.raises(ValueError, match=r"Unknown EQL unit 'sinn'.*Did you mean 'sin'.*Valid units: identity"):
        EQLRegressor(units=["sinn", "product"]).fit(X, y)
    with pytest.raises(ValueError, match="Unknown EQL unit 'foo'"):
        EQLLayer(2, ["identity", "foo"], key=jax.random.key(0))
    with pytest.raises(TypeError, match="list of unit names"):
        EQLRegressor(units="sin").fit(X, y)
    with pytest.raises(ValueError, match="`regulariser` 'l2'.*'l1', 'l12', 'l0'"):
        EQLRegressor(regulariser="l2").fit(X, y)
    with pytest.raises(ValueError, match="`hidden_layers` must be an int >= 0, got -1"):
        EQLRegressor(hidden_layers=-1).fit(X, y)
    with pytest.raises(ValueError, match="`learning_rate` must be a number > 0"):
        EQLRegressor(learning_rate=0.0).fit(X, y)
    with pytest.raises(ValueError, match="`model_selection`"):
        EQLRegressor(model_selection="newest").fit(X, y)
    with pytest.raises(ValueError, match="`y` must be"):
        EQLRegressor().fit(X, np.zeros(3))
    assert set(EQL_UNITS) <= set(unit_names())

"""Fitting the constants of children in the cycles (`optimize_newborn_every`)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import symjax_sr._run as run_mod
import symjax_sr._search as search_mod
from symjax_sr import Population, PySRRegressor, make_operator_set
from symjax_sr._numpy_eval import evaluate_tree_numpy
from symjax_sr._options import SearchOptions

OPS = make_operator_set(["+", "-", "*", "/"], ["cos"])
_rng = np.random.default_rng(0)
X = _rng.uniform(-3, 3, (100, 2)).astype(np.float32)
Y = (1.7 * X[:, 0] / (X[:, 1] ** 2 + 0.6) + 2.5 * np.cos(X[:, 1])).astype(np.float32)


def _mse(tree, X, y):
    pred, ok, _ = evaluate_tree_numpy(tree, X, OPS, float32=True)
    return float(np.mean((pred - y) ** 2)) if ok.all() else math.inf


def _with(opts, **constants):
    return dataclasses.replace(opts, constants=dataclasses.replace(opts.constants, **constants))


@pytest.mark.parametrize("n, every, want", [(380, 19, 20), (100, 19, 5), (380, 0, 0), (101, 19, 1),
                                            (20, 1, 20), (20, 100, 1), (12, 5, 2)])
def test_the_cycles_split_into_equal_chunks_nearest_the_asked_length(n, every, want):
    """Chunks of equal length (one traced cycle, PySR's cycle count), as near as the
    divisors of `ncycles_per_iteration` allow; a prime count gives one chunk (the fit
    after the iteration's cycles), 0 means no fit; ties take fewer chunks."""
    opts = _with(SearchOptions(operators=OPS, n_features=2, ncycles_per_iteration=n),
                 newborn_every=every)
    assert search_mod.newborn_chunks(opts) == want


def test_no_chunks_without_constant_fitting():
    opts = SearchOptions(operators=OPS, n_features=2, ncycles_per_iteration=20)
    assert search_mod.newborn_chunks(_with(opts, newborn_every=5, enabled=False)) == 0
    assert search_mod.newborn_chunks(_with(opts, newborn_every=5, newborn_probability=0.0)) == 0


@pytest.mark.parametrize("batching", [False, True])
def test_children_fitted_after_their_chunk_keep_better_constants_and_their_true_loss(batching):
    """One cycle from the same state, with and without the fit of its children (every
    child selected; no fit at the iteration's end): the cycle is the same (the fit draws
    from its own key stream), members born before it are untouched, a fitted child keeps
    its structure, its loss never rises and is the NumPy loss of its new constants, some
    children improve, and the hall of fame (with batching: the iteration's best
    children) is at least as good at every complexity."""
    ev = run_mod.get_evaluator("switch", OPS)
    base = SearchOptions(operators=OPS, n_features=2, maxsize=14, populations=3,
                         population_size=24, ncycles_per_iteration=1, batching=batching,
                         batch_size=100)
    Xp, base = run_mod._pad_features(X, base)
    base = _with(base, probability=0.0)
    on = _with(base, newborn_every=1, newborn_probability=1.0, newborn_iterations=8)
    data = search_mod.SearchData(jnp.asarray(Xp.T.copy()), jnp.asarray(Y), None,
                                 jnp.asarray(float(np.var(Y)), jnp.float32), jnp.int32(2))
    if batching:  # a batch of every row: the losses in the cycles are full-data losses
        data = data._replace(weights=jnp.ones_like(data.y))
    cur = jnp.int32(base.maxsize)
    state = run_mod._INIT(jax.random.key(4), ev, data, base, cur)
    start = int(state.clock)

    def evolve(opts):  # the program a fit runs, compiled as a fit compiles it
        step = run_mod._compiled(run_mod._EVOLVE, ev, opts, state=state, bdata=data, curmaxsize=cur)
        return jax.device_get(step(state=state, bdata=data, curmaxsize=cur))

    a, b = evolve(base), evolve(on)
    np.testing.assert_array_equal(a.birth, b.birth)
    np.testing.assert_array_equal(a.pop.op, b.pop.op)
    np.testing.assert_array_equal(a.pop.arg, b.pop.arg)
    young = np.asarray(a.birth) >= start
    assert young.any() and (~young).any()
    old = ~young
    np.testing.assert_array_equal(np.asarray(a.pop.const)[old], np.asarray(b.pop.const)[old])
    np.testing.assert_array_equal(np.asarray(a.loss)[old], np.asarray(b.loss)[old])
    la, lb = np.asarray(a.loss), np.asarray(b.loss)
    improved = 0
    for i, j in zip(*np.nonzero(young)):
        assert lb[i, j] <= la[i, j] * (1 + 1e-5) + 1e-7 or np.isinf(la[i, j])
        if lb[i, j] < la[i, j] * (1 - 1e-3):
            improved += 1
            tree = Population(b.pop.op[i], b.pop.arg[i], b.pop.const[i]).tree(j)
            assert lb[i, j] == pytest.approx(_mse(tree, X, Y), rel=1e-3, abs=1e-6)
    assert improved > 0
    ha = a.seen if batching else a.state.hof
    hb = b.seen if batching else b.state.hof
    both = np.asarray(ha.exists) & np.asarray(hb.exists)
    assert both.any() and (np.asarray(hb.exists) >= np.asarray(ha.exists)).all()
    assert (np.asarray(hb.loss)[both] <= np.asarray(ha.loss)[both]).all()


def test_the_regressor_takes_the_options_and_stays_deterministic():
    """`optimize_newborn_*` reach the search, which stays a function of `random_state`."""
    kw = dict(binary_operators=["+", "*"], unary_operators=["cos"], niterations=3, populations=2,
              population_size=16, ncycles_per_iteration=20, maxsize=12, progress=False,
              verbosity=0, random_state=2, optimize_newborn_every=5,
              optimize_newborn_probability=0.3, optimize_newborn_iterations=2, evaluator="switch")
    runs = [PySRRegressor(**kw).fit(X, Y).equations_ for _ in range(2)]
    assert runs[0][["complexity", "loss", "equation"]].equals(runs[1][["complexity", "loss",
                                                                       "equation"]])
    with pytest.raises(ValueError, match="optimize_newborn_probability"):
        PySRRegressor(**dict(kw, optimize_newborn_probability=2.0)).fit(X, Y)

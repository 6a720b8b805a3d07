"""The fast kernels against the reference evaluator and the independent NumPy evaluation.

Tolerance (documented in `symjax_sr/_kernels/__init__.py`): values as the reference
evaluator is held to in `test_evaluate.py` (`|kernel - ref64| <= 4 * spread + 1e-5 *
|ref64|`, `spread` from float64 runs perturbed by a relative 1e-6), and non-finite
flags identical to `ReferenceEvaluator` and to the float32 NumPy simulation on every
row whose flag is stable under those perturbations. Fast sin/cos differ from XLA's by
about one ulp, so a row whose finiteness flips under a relative 1e-6 perturbation
(e.g. `log(sin(cos(exp(15.4))))`, where a 1-ulp change moves `exp` by 40) is
allowed to differ; it would differ between any two libms too.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _strategies import ALL_OPERATORS, datasets, trees
from _tolerance import reference_bound
from hypothesis import example, given, settings
from hypothesis import strategies as st

import symjax_sr as sr
from symjax_sr._evaluate import ReferenceEvaluator, get_evaluator, reduce_loss
from symjax_sr._kernels import (
    AutoEvaluator,
    SelectEvaluator,
    SwitchEvaluator,
    choose_evaluator,
)
from symjax_sr._numpy_eval import evaluate_tree_numpy
from symjax_sr._random import numpy_rng_population

L, K, P = 40, 24, 6
OPS = ALL_OPERATORS
BENCH_OPS = sr.make_operator_set(["+", "-", "*", "/"], ["sin", "cos", "exp", "log", "sqrt", "square", "neg"])
# Small blocks and row tiles so that sorting, block padding and row padding are exercised.
KERNELS = {
    "select": SelectEvaluator(OPS, block=4, row_block=8),
    "switch": SwitchEvaluator(OPS, row_block=8),
}
_predict = eqx.filter_jit(lambda ev, pop, Xt: ev.predict(pop, Xt))
_loss = eqx.filter_jit(lambda ev, pop, Xt, y, w: ev.loss(pop, Xt, y, w))


def _population(tree_list):
    """Pad the list to P trees (repeating the first) so every example has one shape."""
    tree_list = list(tree_list) + [tree_list[0]] * (P - len(tree_list))
    return tree_list, sr.stack_trees(tree_list, L, K)


def _stable_and_bound(tree, X, delta=1e-6, rel=1e-5):
    """Rows whose flag survives perturbation, and the value bound of `test_evaluate.py`."""
    ref64, ok64, bound, stable = reference_bound(tree, X, OPS, delta, rel)
    _, ok32, _ = evaluate_tree_numpy(tree, X, OPS, float32=True)
    return stable & (ok64 == ok32), ok32, ref64, bound


def _pow_of_subnormal(sign):
    """`x0 ^ c` at x0 = 0 with a subnormal `c`: XLA:CPU's pow does not flush `c`."""
    op = np.array([1, 2, OPS.opcode("^")], np.int32)
    value = np.array([0.0, sign * 1e-45, 0.0], np.float32)
    return [sr.Tree(op, np.zeros(3, np.int32), value)]


@pytest.mark.parametrize("name", list(KERNELS))
@given(st.lists(trees(), min_size=1, max_size=P), datasets())
@example(_pow_of_subnormal(1.0), np.zeros((12, 3), np.float32))
@example(_pow_of_subnormal(-1.0), np.zeros((12, 3), np.float32))
@settings(max_examples=25)
def test_kernel_matches_reference_and_numpy(name, tree_list, X):
    tree_list, pop = _population(tree_list)
    Xt = jnp.asarray(X.T)
    pred, ok = (np.asarray(a) for a in _predict(KERNELS[name], pop, Xt))
    rpred, rok = (np.asarray(a) for a in _predict(ReferenceEvaluator(OPS), pop, Xt))
    assert np.all(np.isnan(pred[~ok])) and np.all(np.isfinite(pred[ok]))
    for i, t in enumerate(tree_list):
        stable, ok32, ref64, bound = _stable_and_bound(t, X)
        np.testing.assert_array_equal(ok[i][stable], rok[i][stable], err_msg=f"tree {i} vs reference")
        np.testing.assert_array_equal(ok[i][stable], ok32[stable], err_msg=f"tree {i} vs NumPy f32")
        both = ok[i] & rok[i] & np.isfinite(bound)
        err = np.abs(pred[i] - ref64)
        assert np.all(err[both] <= bound[both]), f"tree {i}: rows {np.flatnonzero(both & (err > bound))}"


@pytest.mark.parametrize("name", list(KERNELS))
@given(st.lists(trees(), min_size=1, max_size=P), datasets(), st.booleans())
@settings(max_examples=12)
def test_fused_loss_matches_reduce_loss(name, tree_list, X, weighted):
    _, pop = _population(tree_list)
    Xt = jnp.asarray(X.T)
    y = jnp.linspace(-1, 1, X.shape[0], dtype=jnp.float32)
    w = jnp.linspace(0.5, 2, X.shape[0], dtype=jnp.float32) if weighted else None
    pred, ok = _predict(KERNELS[name], pop, Xt)
    expected = np.asarray(reduce_loss(pred, ok, y, w))
    got = np.asarray(_loss(KERNELS[name], pop, Xt, y, w))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.fixture(scope="module")
def bench_population():
    pop = numpy_rng_population(3, 64, BENCH_OPS, 3, 32, 8, min_size=3, max_size=31)
    X = np.random.default_rng(1).uniform(-2, 2, (50, 3)).astype(np.float32)
    return pop, jnp.asarray(X.T), jnp.asarray(X[:, 0] * np.cos(X[:, 1]))


@pytest.mark.parametrize("name", ["select", "switch"])
def test_jvp_wrt_constants_finite_and_matches_reference(name, bench_population):
    pop, Xt, y = bench_population
    ev = get_evaluator(name, BENCH_OPS)

    def loss_of(ev):
        return lambda c: ev.loss(eqx.tree_at(lambda p: p.const, pop, c), Xt, y)

    tangent = jnp.ones_like(pop.const)
    loss, dloss = jax.jit(lambda c: jax.jvp(loss_of(ev), (c,), (tangent,)))(pop.const)
    rloss, rdloss = jax.jit(lambda c: jax.jvp(loss_of(ReferenceEvaluator(BENCH_OPS)), (c,), (tangent,)))(pop.const)
    loss, dloss, rloss, rdloss = map(np.asarray, (loss, dloss, rloss, rdloss))
    finite = np.isfinite(loss)
    assert finite.sum() > 5
    assert np.all(np.isfinite(dloss[finite]))
    d, r = dloss[finite], rdloss[finite]
    assert np.all(np.abs(d - r) <= 1e-3 * np.abs(r) + 1e-4), np.flatnonzero(np.abs(d - r) > 1e-3 * np.abs(r) + 1e-4)
    # Forward-mode Jacobian through `predict`, as the constant optimiser uses it.
    jac = jax.jit(jax.jacfwd(lambda c: ev.predict(eqx.tree_at(lambda p: p.const, pop, c), Xt)[0]))(pop.const)
    assert np.all(np.isfinite(np.asarray(jac)[finite]))


@pytest.mark.parametrize("name", ["select", "switch"])
def test_no_recompile_on_second_population(name):
    ev = get_evaluator(name, BENCH_OPS)
    traces = []

    @jax.jit
    def loss(pop, Xt, y):
        traces.append(1)
        return ev.loss(pop, Xt, y)

    X = jnp.ones((3, 20))
    for seed in (0, 1, 2):
        pop = numpy_rng_population(seed, 16, BENCH_OPS, 3, 32, 8, min_size=3, max_size=31)
        loss(pop, X, X[0])
    assert len(traces) == 1


def test_vmap_over_datasets_matches_loop(bench_population):
    pop, Xt, y = bench_population
    ev = SelectEvaluator(BENCH_OPS)
    Xs = jnp.stack([Xt, Xt * 0.5])
    batched = jax.jit(jax.vmap(lambda x: ev.loss(pop, x, y)))(Xs)
    for j in range(2):
        np.testing.assert_allclose(batched[j], jax.jit(ev.loss)(pop, Xs[j], y), rtol=1e-6)


def test_auto_choice_and_registry(bench_population):
    pop, Xt, y = bench_population
    name, timings = choose_evaluator(BENCH_OPS, pop, Xt, y, repeats=1)
    assert name in ("select", "switch") and set(timings) == {"select", "switch"}
    auto = get_evaluator("auto", BENCH_OPS)
    assert isinstance(auto, AutoEvaluator)
    np.testing.assert_allclose(
        jax.jit(auto.loss)(pop, Xt, y), jax.jit(get_evaluator(name, BENCH_OPS).loss)(pop, Xt, y),
        rtol=1e-5,
    )


def test_bad_block_size_names_the_value():
    with pytest.raises(ValueError, match="block"):
        SelectEvaluator(BENCH_OPS, block=0)
    with pytest.raises(ValueError, match="row_block"):
        SwitchEvaluator(BENCH_OPS, row_block=0)


@pytest.mark.parametrize("n, block", [(1, 8), (7, 8), (45, 20), (100, 64), (5000, 4096),
                                      (10_000, 4096), (4096, 4096), (4097, 4096)])
def test_row_tiles_are_few_and_nearly_unpadded(n, block):
    from symjax_sr._kernels._common import pad_rows

    Xt = jnp.arange(3 * n, dtype=jnp.float32).reshape(3, n)
    tiles, valid, R = pad_rows(Xt, block)
    nb = tiles.shape[0]
    assert tiles.shape == (nb, 3, R) and valid.shape == (nb, R)
    assert nb == -(-n // block)  # as few tiles as `block` allows
    assert nb * R >= n and (nb == 1 or nb * R - n < 8 * nb)  # padding: a few rows per tile
    assert R <= max(block, n if nb == 1 else 0) + 7
    back = np.asarray(tiles.transpose(1, 0, 2).reshape(3, nb * R))
    np.testing.assert_array_equal(back[:, :n], np.asarray(Xt))
    np.testing.assert_array_equal(np.asarray(valid).reshape(-1), np.arange(nb * R) < n)
    assert not np.any(back[:, n:])


@pytest.mark.parametrize("name", ["select", "switch"])
def test_unequal_tiles_agree_with_one_tile(name, bench_population):
    """45 rows in tiles of at most 20 (three of 16) give the one-tile flags, and values
    and losses up to rounding (XLA:CPU vectorises a tile's tail differently)."""
    pop, _, _ = bench_population
    X = np.random.default_rng(2).uniform(-2, 2, (45, 3)).astype(np.float32)
    Xt, y = jnp.asarray(X.T), jnp.asarray(np.sin(X[:, 0]) * X[:, 2])
    kw = dict(block=4) if name == "select" else {}
    cls = SelectEvaluator if name == "select" else SwitchEvaluator
    tiled, whole = cls(BENCH_OPS, row_block=20, **kw), cls(BENCH_OPS, row_block=64, **kw)
    p1, ok1 = (np.asarray(a) for a in _predict(tiled, pop, Xt))
    p2, ok2 = (np.asarray(a) for a in _predict(whole, pop, Xt))
    np.testing.assert_array_equal(ok1, ok2)
    np.testing.assert_allclose(p1[ok1], p2[ok2], rtol=1e-5, atol=1e-6)
    l1 = np.asarray(_loss(tiled, pop, Xt, y, None))
    l2 = np.asarray(_loss(whole, pop, Xt, y, None))
    np.testing.assert_array_equal(np.isfinite(l1), np.isfinite(l2))
    np.testing.assert_allclose(l1[np.isfinite(l1)], l2[np.isfinite(l2)], rtol=1e-5)


@pytest.mark.parametrize("name", list(KERNELS))
@given(st.lists(trees(), min_size=1, max_size=P), datasets(), st.data())
@settings(max_examples=20)
def test_non_finite_leaves_flag_like_the_reference(name, tree_list, X, data):
    """Non-finite constants and data rows flag a row exactly as the reference does, also
    under operators that map them back to finite values (exp(-inf) = 0, 1 / inf = 0):
    the switch kernel reads leaves in place and makes any node with a non-finite operand
    NaN instead of carrying a flag."""
    bad = st.sampled_from([np.inf, -np.inf, np.nan])
    trees_ = []
    for t in tree_list:
        const = np.array(t.constants, np.float64)
        if const.size:
            hit = data.draw(st.lists(st.booleans(), min_size=const.size, max_size=const.size))
            const = np.where(hit, [data.draw(bad) for _ in hit], const)
        trees_.append(t.with_constants(const))
    X = X.copy()
    X[data.draw(st.integers(0, X.shape[0] - 1)), data.draw(st.integers(0, X.shape[1] - 1))] = data.draw(bad)
    tree_list, pop = _population(trees_)
    Xt = jnp.asarray(X.T)
    pred, ok = (np.asarray(a) for a in _predict(KERNELS[name], pop, Xt))
    rpred, rok = (np.asarray(a) for a in _predict(ReferenceEvaluator(OPS), pop, Xt))
    np.testing.assert_array_equal(ok, rok)
    np.testing.assert_array_equal(np.isfinite(pred), ok)


def test_absorbing_operators_keep_the_flag():
    """exp(c) with c = -inf and x0 / c with c = inf are finite values (0) of a node with a
    non-finite operand: not ok, as the reference says."""
    exp_, div = OPS.opcode("exp"), OPS.opcode("/")
    t1 = sr.Tree(np.array([2, exp_], np.int32), np.zeros(2, np.int32), np.array([-np.inf, 0.0]))
    t2 = sr.Tree(np.array([1, 2, div], np.int32), np.zeros(3, np.int32), np.array([0.0, np.inf, 0.0]))
    _, pop = _population([t1, t2])
    Xt = jnp.ones((3, 5), jnp.float32)
    for ev in KERNELS.values():
        _, ok = _predict(ev, pop, Xt)
        assert not np.asarray(ok)[:2].any()

"""Batched constant optimisation, checked against scipy on the same expressions and starts."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares, minimize

from symjax_sr._constants import (
    ConstantOptions,
    ConstantStatus,
    constant_count,
    optimize_constants,
    population_loss,
    resolve_algorithm,
    restart_starts,
    select_members,
)
from symjax_sr._evaluate import ReferenceEvaluator, l2_loss
from symjax_sr._numpy_eval import evaluate_tree_numpy
from symjax_sr._operators import CONST, VAR, make_operator_set
from symjax_sr._random import numpy_rng_population
from symjax_sr._tree import Tree, stack_trees

OPS = make_operator_set(["+", "-", "*", "/"], ["sin", "exp", "log"])
EV = ReferenceEvaluator(OPS)
L, K, N = 16, 4, 64
ADD, SUB, MUL, DIV = (OPS.opcode(o) for o in "+-*/")
SIN, EXP, LOG = (OPS.opcode(o) for o in ("sin", "exp", "log"))


def _tree(nodes):
    """Postfix list of ("x", i), ("c", value) or opcode."""
    op, arg, val = [], [], []
    for n in nodes:
        if isinstance(n, tuple) and n[0] == "x":
            op.append(VAR), arg.append(n[1]), val.append(0.0)
        elif isinstance(n, tuple):
            op.append(CONST), arg.append(0), val.append(n[1])
        else:
            op.append(n), arg.append(0), val.append(0.0)
    return Tree(np.array(op, np.int32), np.array(arg, np.int32), np.array(val, np.float64))


def sin_tree(c0=1.0, c1=1.0):  # c0·x0·sin(c1·x1)
    return _tree([("c", c0), ("x", 0), MUL, ("c", c1), ("x", 1), MUL, SIN, MUL])


def exp_tree(c0=1.0, c1=0.5):  # c0·exp(c1·x0)
    return _tree([("c", c0), ("c", c1), ("x", 0), MUL, EXP, MUL])


def rational_tree(c0=1.0, c1=3.0):  # x1 / (x0 + c1) + c0
    return _tree([("x", 1), ("x", 0), ("c", c1), ADD, DIV, ("c", c0), ADD])


def line_tree(c0=0.0, c1=0.0):  # c0 + c1·x0
    return _tree([("c", c0), ("c", c1), ("x", 0), MUL, ADD])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (N, 2)).astype(np.float32)
    y = (2.5 * X[:, 0] * np.sin(1.3 * X[:, 1])).astype(np.float32)
    return X, y


def _run(pop, X, y, options, key=0, **kw):
    return optimize_constants(
        pop, jnp.asarray(X.T), jnp.asarray(y), kw.pop("weights", None), evaluator=EV,
        key=jax.random.key(key), options=options, **kw,
    )


def _np_model(tree, X):
    def f(c):
        pred, _, _ = evaluate_tree_numpy(tree.with_constants(c), X, OPS)
        return pred

    return f


# ------------------------------------------------------------------ scipy agreement

# Each case: tree with its start, target built from true constants (+ noise, so the
# residual at the optimum is not zero for some).
CASES = [
    (sin_tree(2.0, 1.0), sin_tree(2.5, 1.3), 0.0),
    (exp_tree(1.0, 0.2), exp_tree(0.7, 0.9), 0.05),
    (rational_tree(0.0, 4.0), rational_tree(0.5, 3.0), 0.02),
    (line_tree(0.0, 0.0), line_tree(-1.0, 2.0), 0.1),
]


def _case_data(X, target, noise, seed):
    rng = np.random.default_rng(seed)
    y, _, _ = evaluate_tree_numpy(target, X, OPS)
    return (y + noise * rng.standard_normal(len(y))).astype(np.float32)


@pytest.mark.parametrize("algorithm", ["LM", "BFGS"])
def test_matches_scipy_optimum(data, algorithm):
    X, _ = data
    options = ConstantOptions(algorithm=algorithm, iterations=30, nrestarts=0)
    checked = 0
    for seed, (start, target, noise) in enumerate(CASES):
        y = _case_data(X, target, noise, seed)
        pop = stack_trees([start], L, K)
        res = _run(pop, X, y, options)
        f = _np_model(start, X.astype(np.float64))
        x0 = start.constants.astype(np.float64)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if algorithm == "LM":
                sol = least_squares(lambda c, f=f, y=y: (f(c) - y) / np.sqrt(N), x0, method="lm")
                converged = sol.success
            else:
                sol = minimize(lambda c, f=f, y=y: np.mean((f(c) - y) ** 2), x0, method="BFGS")
                converged = sol.success or np.linalg.norm(sol.jac) < 1e-4
        if not converged:
            continue
        checked += 1
        scipy_loss = np.mean((f(sol.x) - y) ** 2)
        ours = float(res.loss[0])
        np.testing.assert_allclose(ours, scipy_loss, rtol=1e-3, atol=1e-6)
        c = np.asarray(res.pop.const[0, :2])
        np.testing.assert_allclose(c, sol.x, rtol=2e-3, atol=2e-3)
        assert int(res.status[0]) == ConstantStatus.IMPROVED
    assert checked >= 3


def test_weighted_lm_matches_scipy(data):
    X, _ = data
    start, target, noise = CASES[1]
    y = _case_data(X, target, 0.3, 7)
    w = np.random.default_rng(1).uniform(0.1, 2.0, N).astype(np.float32)
    res = _run(stack_trees([start], L, K), X, y,
               ConstantOptions(algorithm="LM", iterations=30, nrestarts=0),
               weights=jnp.asarray(w))
    f = _np_model(start, X.astype(np.float64))
    sw = np.sqrt(w / w.sum())
    sol = least_squares(lambda c: sw * (f(c) - y), start.constants.astype(np.float64), method="lm")
    assert sol.success
    np.testing.assert_allclose(np.asarray(res.pop.const[0, :2]), sol.x, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(float(res.loss[0]), np.sum(w * (f(sol.x) - y) ** 2) / w.sum(),
                               rtol=1e-3)


# ------------------------------------------------------------------ restarts


def _recovered(const):
    c = const[:, :2]
    true = np.array([2.5, 1.3])
    return np.all(np.abs(c - true) < 1e-2, 1) | np.all(np.abs(c + true) < 1e-2, 1)


def test_restarts_raise_recovery(data):
    X, y = data
    inits = np.random.default_rng(3).uniform(-3, 3, (100, 2))
    pop = stack_trees([sin_tree(*c) for c in inits], L, K)
    rates = {}
    for nrestarts in (0, 4):
        res = _run(pop, X, y, ConstantOptions(algorithm="LM", iterations=15, nrestarts=nrestarts))
        rates[nrestarts] = _recovered(np.asarray(res.pop.const)).mean()
    assert rates[4] >= rates[0] + 0.1, rates
    assert rates[4] >= 0.85, rates


def test_restart_starts_follow_pysr():
    const = jnp.array([[2.0, -1.0, 7.0, 7.0], [3.0, 0.0, 0.0, 0.0]])
    starts = restart_starts(const, jnp.array([2, 1]), 3, key=jax.random.key(0))
    assert starts.shape == (4, 2, 4)
    np.testing.assert_array_equal(starts[0], const)
    np.testing.assert_array_equal(starts[:, 0, 2:], 7.0)  # unused slots untouched
    np.testing.assert_array_equal(starts[:, 1, 1:], 0.0)
    ratio = np.asarray(starts[1:, :, 0] / const[None, :, 0])
    assert not np.allclose(ratio, 1.0)


# ------------------------------------------------------------------ failure is data


def _blowup_trees():
    return [
        _tree([("c", 1.0), ("x", 0), MUL, LOG]),  # log of negatives: never finite
        _tree([("c", 1.0), ("x", 0), MUL, ("x", 1), ("x", 1), SUB, DIV]),  # c·x0 / 0
        _tree([("x", 0), ("c", 1.0), ("c", 1.0), SUB, DIV]),  # x / (c - c): only restarts help
        _tree([("c", 60.0), ("x", 0), EXP, MUL, EXP]),  # exp overflow at the start
        _tree([("c", 0.5), ("x", 1), MUL, EXP, EXP, ("c", 1.0), MUL]),  # overflows if c0 grows
        _tree([("x", 0), ("c", 0.01), DIV]),  # finite; a large step may blow up
        sin_tree(-2.9, 2.8),
    ]


def test_no_nan_enters_population(data):
    X, y = data
    trees = _blowup_trees()
    rnd = numpy_rng_population(5, 41, OPS, 2, L, K, min_size=3, max_size=L)
    pop = stack_trees(trees + rnd.trees(), L, K)
    pop_loss = population_loss(EV, pop, jnp.asarray(X.T), jnp.asarray(y))
    for algorithm in ("LM", "BFGS"):
        res = _run(pop, X, y, ConstantOptions(algorithm=algorithm, iterations=6, nrestarts=2))
        const = np.asarray(res.pop.const)
        assert np.all(np.isfinite(const))
        loss = np.asarray(res.loss)
        assert not np.any(np.isnan(loss))
        status = np.asarray(res.status)
        assert status[0] == ConstantStatus.NONFINITE
        assert status[1] == ConstantStatus.NONFINITE
        assert np.isinf(float(pop_loss[2])) and status[2] == ConstantStatus.IMPROVED
        assert np.isfinite(loss[2])
        unchanged = ~np.asarray(res.improved)
        np.testing.assert_array_equal(const[unchanged], np.asarray(pop.const)[unchanged])
        # The reported loss is the loss of the returned constants.
        again = np.asarray(population_loss(EV, res.pop, jnp.asarray(X.T), jnp.asarray(y)))
        imp = np.asarray(res.improved)
        np.testing.assert_allclose(again[imp], loss[imp], rtol=1e-4, atol=1e-7)
        assert imp.sum() > 5


def test_improved_only_and_masked_members_unchanged(data):
    X, y = data
    rnd = numpy_rng_population(9, 48, OPS, 2, L, K, min_size=3, max_size=L)
    const = np.asarray(rnd.const).copy()
    const[:, -1] = 123.0  # garbage in an unused slot of most members
    pop = type(rnd)(jnp.asarray(rnd.op), jnp.asarray(rnd.arg), jnp.asarray(const))
    mask = np.arange(48) % 2 == 0
    before = np.asarray(population_loss(EV, pop, jnp.asarray(X.T), jnp.asarray(y)))
    res = _run(pop, X, y, ConstantOptions(iterations=6, nrestarts=1),
               mask=jnp.asarray(mask), loss_before=jnp.asarray(before))
    new = np.asarray(res.pop.const)
    loss, imp, status = np.asarray(res.loss), np.asarray(res.improved), np.asarray(res.status)
    np.testing.assert_array_equal(new[~mask], const[~mask])
    assert np.all(status[~mask] == ConstantStatus.SKIPPED) and not imp[~mask].any()
    assert np.all(loss <= before) and np.all(loss[imp] < before[imp])
    np.testing.assert_array_equal(loss[~imp], before[~imp])
    np.testing.assert_array_equal(new[~imp], const[~imp])
    count = np.asarray(constant_count(pop))
    for i in range(48):  # only the member's own slots may move
        np.testing.assert_array_equal(new[i, count[i]:], const[i, count[i]:])
    assert np.all((status == ConstantStatus.IMPROVED) == imp)
    assert imp.any()


def test_capacity_compacts_selected_members(data):
    X, y = data
    pop = stack_trees([sin_tree(2.0, 1.2)] * 10, L, K)
    mask = jnp.asarray(np.arange(10) % 3 != 0)  # 6 selected
    res = _run(pop, X, y, ConstantOptions(iterations=5, nrestarts=0), mask=mask, capacity=4)
    status = np.asarray(res.status)
    assert (status == ConstantStatus.IMPROVED).sum() == 4
    assert (status == ConstantStatus.OVER_CAPACITY).sum() == 2
    assert np.all(status[np.asarray(~mask)] == ConstantStatus.SKIPPED)
    # The first selected members in order are the ones optimised.
    assert list(np.flatnonzero(status == ConstantStatus.IMPROVED)) == [1, 2, 4, 5]


def test_eval_counts(data):
    X, y = data
    pop = stack_trees([sin_tree(2.0, 1.2)] * 3 + [_tree([("x", 0)])], L, K)
    loss = jnp.zeros(4) + 10.0
    res = _run(pop, X, y, ConstantOptions(iterations=6, nrestarts=1), loss_before=loss)
    # LM: one evaluation at the start, then per iteration 3 trials plus the Jacobian
    # at the point moved to, per start, per member.
    lanes = 3 * 2
    assert lanes * (1 + 6 * 3) <= int(res.n_evals) <= lanes * (1 + 6 * 4)
    assert int(res.status[3]) == ConstantStatus.SKIPPED  # no constants
    # The last step's accepted point is not evaluated again: one iteration is the start
    # and three trials per lane, two add a derivative pass where the first step moved.
    one = _run(pop, X, y, ConstantOptions(iterations=1, nrestarts=0), loss_before=loss)
    assert int(one.n_evals) == 3 * (1 + 3)
    two = _run(pop, X, y, ConstantOptions(iterations=2, nrestarts=0), loss_before=loss)
    assert 3 * (1 + 3 + 3) <= int(two.n_evals) <= 3 * (1 + 3 + 1 + 3)
    limited = _run(pop, X, y, ConstantOptions(iterations=6, nrestarts=1, f_calls_limit=3),
                   loss_before=loss)
    # The limit is checked once per iteration: one iteration here.
    assert lanes * 4 <= int(limited.n_evals) <= lanes * 5
    bfgs = _run(pop, X, y, ConstantOptions(algorithm="BFGS", iterations=6, nrestarts=1,
                                           f_calls_limit=5), loss_before=loss)
    assert 3 * 2 * 2 <= int(bfgs.n_evals) <= 3 * 2 * 6
    assert np.all(np.asarray(bfgs.loss[:3]) < 10.0)


# ------------------------------------------------------------------ other losses


def _logcosh(pred, target):
    d = pred - target
    return jnp.abs(d) + jnp.log1p(jnp.exp(-2 * jnp.abs(d))) - jnp.log(2.0)


def _relative_loss(pred, y, weights):
    return jnp.mean(jnp.square((pred - y) / (1.0 + jnp.abs(y))))


@pytest.mark.parametrize("kind", ["elementwise", "full"])
def test_other_losses_use_bfgs_and_match_scipy(data, kind):
    X, _ = data
    start, target, _ = CASES[2]
    y = _case_data(X, target, 0.2, 11)
    options = ConstantOptions(algorithm="LM", iterations=30, nrestarts=0)
    if kind == "elementwise":
        kw = {"elementwise_loss": _logcosh}

        def np_loss(p):
            d = np.abs(p - y)
            return np.mean(d + np.log1p(np.exp(-2 * d)) - np.log(2.0))
    else:
        kw = {"loss_function": _relative_loss}

        def np_loss(p):
            return np.mean(((p - y) / (1.0 + np.abs(y))) ** 2)

    assert resolve_algorithm(options, **kw) == "BFGS"
    res = _run(stack_trees([start], L, K), X, y, options, **kw)
    f = _np_model(start, X.astype(np.float64))
    sol = minimize(lambda c: np_loss(f(c)), start.constants.astype(np.float64), method="BFGS")
    assert sol.success
    np.testing.assert_allclose(float(res.loss[0]), sol.fun, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.pop.const[0, :2]), sol.x, rtol=5e-3, atol=5e-3)
    direct = population_loss(EV, res.pop, jnp.asarray(X.T), jnp.asarray(y), None, **kw)
    np.testing.assert_allclose(float(direct[0]), float(res.loss[0]), rtol=1e-5)


def test_squared_error_runs_lm_by_default():
    assert ConstantOptions().algorithm == "LM"
    assert resolve_algorithm(ConstantOptions()) == "LM"
    assert resolve_algorithm(ConstantOptions(), l2_loss) == "LM"
    assert resolve_algorithm(ConstantOptions(algorithm="BFGS")) == "BFGS"


# ------------------------------------------------------------------ options


def test_disabled_is_a_no_op(data):
    X, y = data
    pop = stack_trees([sin_tree(2.0, 1.2)], L, K)
    res = _run(pop, X, y, ConstantOptions(enabled=False))
    np.testing.assert_array_equal(np.asarray(res.pop.const), np.asarray(pop.const))
    assert int(res.status[0]) == ConstantStatus.SKIPPED
    assert not bool(res.improved[0])


def test_select_members():
    pop = stack_trees([sin_tree()] * 500 + [_tree([("x", 0)])] * 100, L, K)
    mask = np.asarray(select_members(pop, ConstantOptions(probability=0.3), key=jax.random.key(0)))
    assert not mask[500:].any()
    assert 0.2 < mask[:500].mean() < 0.4
    none = select_members(pop, ConstantOptions(enabled=False), key=jax.random.key(0))
    assert not np.asarray(none).any()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"algorithm": "BGFS"}, ValueError, "Did you mean 'BFGS'"),
        ({"algorithm": "NelderMead"}, ValueError, "Valid: 'BFGS', 'LM'"),
        # TypeErrors: the jaxtyping import hook, when on, raises first with its own text.
        ({"algorithm": 3}, TypeError, "algorithm"),
        ({"iterations": 0}, ValueError, "should_optimize_constants=False"),
        ({"iterations": 2.5}, TypeError, "iterations"),
        ({"iterations": True}, TypeError, "optimizer_iterations"),
        ({"nrestarts": -1}, ValueError, "optimizer_nrestarts"),
        ({"f_calls_limit": 0}, ValueError, "optimizer_f_calls_limit"),
        ({"probability": 1.5}, ValueError, r"\[0, 1\]"),
        ({"enabled": "yes"}, TypeError, "should_optimize_constants|enabled"),
        ({"damping": -1.0}, ValueError, "damping"),
        ({"narrow_widths": [2, 4]}, ValueError, "narrow_widths"),
        ({"narrow_widths": (0,)}, ValueError, r"\(\) for the full table"),
        ({"newborn_every": -1}, ValueError, "optimize_newborn_every.*use 0"),
        ({"newborn_every": 2.0}, TypeError, "newborn_every"),
        ({"newborn_probability": -0.1}, ValueError, r"optimize_newborn_probability.*\[0, 1\]"),
        ({"newborn_probability": "0.1"}, TypeError, "newborn_probability"),
        ({"newborn_iterations": 0}, ValueError, "optimize_newborn_every=0"),
    ],
)
def test_options_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        ConstantOptions(**kwargs)


def test_options_names_and_pysr_mapping():
    assert ConstantOptions(algorithm="bfgs").algorithm == "BFGS"
    assert ConstantOptions(algorithm="levenberg-marquardt").algorithm == "LM"
    o = ConstantOptions.from_pysr(optimizer_algorithm="BFGS", optimizer_iterations=5,
                                  optimizer_nrestarts=1, optimizer_f_calls_limit=100,
                                  optimize_probability=0.5, should_optimize_constants=False,
                                  optimize_newborn_every=19, optimize_newborn_probability=0.2,
                                  optimize_newborn_iterations=3)
    # The search compiles the full tangent width only (see `from_pysr`).
    want = ConstantOptions("BFGS", 5, 1, 100, 0.5, False, narrow_widths=(), newborn_every=19,
                           newborn_probability=0.2, newborn_iterations=3)
    assert o == want and hash(o) == hash(want)


_TRACES = []


def _counting_l2(pred, target):
    _TRACES.append(1)  # runs at trace time only
    return jnp.square(pred - target)


def test_compiles_once_for_new_values(data):
    X, y = data
    pop = stack_trees([sin_tree(2.0, 1.2), exp_tree()], L, K)
    options = ConstantOptions(iterations=2, nrestarts=1)
    kw = {"elementwise_loss": _counting_l2}
    _run(pop, X, y, options, key=0, mask=jnp.array([True, True]),
         loss_before=jnp.array([1.0, 2.0]), **kw)
    traced = len(_TRACES)
    assert traced > 0
    pop2 = stack_trees([sin_tree(1.0, 0.5), exp_tree(2.0, 0.1)], L, K)
    res = _run(pop2, X, y * 2, options, key=1, mask=jnp.array([False, True]),
               loss_before=jnp.array([3.0, 2.0]), **kw)
    jax.block_until_ready(res)
    assert len(_TRACES) == traced  # new data, key, mask and losses: no retrace


def test_bench_constants_breakdown_times_each_piece_on_the_run_lanes(capsys):
    import argparse
    import json

    from symjax_sr.bench import _constants as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--populations", "20", "--rows", "30", "--tasks", "sin",
                              "--methods", "LM", "--restarts", "2", "--scipy-members", "3",
                              "--breakdown", "--json"])
    assert bench.main(args) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    b = row["breakdown_ms"]
    assert b["lanes"] == row["members"] * 3 == 60
    assert set(b) == {"predict", "loss", "gauss_newton", "trials", "lanes"}
    assert all(b[k] > 0 for k in ("predict", "loss", "gauss_newton", "trials"))


@pytest.mark.parametrize("name", ["switch", "auto", "select", "reference"])
def test_lanes_sharing_a_structure_give_the_repeated_results(name):
    """`groups=R` (the restarts of a member share its structure; the switch kernel then
    runs each structure once for all of them) changes no flag and no value beyond
    rounding: predictions, Gauss-Newton terms and trial losses against `groups=1`."""
    import jax
    import jax.numpy as jnp

    import symjax_sr._kernels  # noqa: F401
    from symjax_sr._evaluate import get_evaluator
    from symjax_sr._operators import make_operator_set
    from symjax_sr._optimise._objective import Objective
    from symjax_sr._random import numpy_rng_population

    ops = make_operator_set(["+", "-", "*", "/"], ["sin", "cos", "exp", "log", "sqrt"])
    C, R, K = 40, 3, 6
    pop = numpy_rng_population(0, C, ops, 3, 24, K, min_size=3, max_size=21)
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, (37, 3)).astype(np.float32)
    Xt, y = jnp.asarray(X.T), jnp.asarray(X[:, 0] * np.cos(X[:, 1]))
    ev = get_evaluator(name, ops)

    def rep(a):
        return jnp.asarray(np.tile(np.asarray(a), (R,) + (1,) * (np.ndim(a) - 1)))

    c = rep(pop.const) * (1 + 0.2 * jnp.asarray(rng.standard_normal((R * C, K)), jnp.float32))
    free = rep(ev.free_constants(pop))
    objs = [Objective(ev, rep(pop.op), rep(pop.arg), free, Xt, y, None, groups=g) for g in (1, R)]
    assert objs[1]._sharing() == (name in ("switch", "auto"))  # auto: switch on CPU
    for f in (lambda o: o.predict(c), lambda o: o.gauss_newton(c),
              lambda o: o.loss_many(jnp.stack([c, 1.1 * c]))):
        one, shared = (jax.tree.leaves(jax.jit(f)(o)) for o in objs)
        for u, v in zip(one, shared, strict=True):
            u, v = np.asarray(u), np.asarray(v)
            np.testing.assert_array_equal(np.isfinite(u), np.isfinite(v))
            fin = np.isfinite(u)
            np.testing.assert_allclose(v[fin], u[fin], rtol=1e-5, atol=1e-6)
    assert np.isfinite(np.asarray(objs[1].predict(c)[0])).any()


# ------------------------------------------------------------------ narrow tangent widths


@pytest.mark.parametrize("K", [1, 2, 3, 4, 5, 8, 10])
def test_spd_solve_matches_numpy(K):
    """The unrolled Cholesky (K <= 8) and XLA's (K > 8) against numpy.linalg.solve on
    random SPD batches; a matrix that is not positive definite gives a non-finite step."""
    from symjax_sr._optimise._linalg import spd_solve

    rng = np.random.default_rng(K)
    J = rng.standard_normal((3, 50, 20, K))
    A = np.einsum("mbnk,mbnj->mbkj", J, J) + 1e-2 * np.eye(K)
    b = rng.standard_normal((3, 50, K))
    want = np.linalg.solve(A, b[..., None])[..., 0]
    for unrolled in (True, False):
        got = np.asarray(jax.jit(spd_solve, static_argnums=2)(
            jnp.asarray(A, jnp.float32), jnp.asarray(b, jnp.float32), unrolled))
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
    bad = -np.eye(K)[None]
    assert not np.isfinite(np.asarray(spd_solve(jnp.asarray(bad, jnp.float32),
                                                jnp.ones((1, K), jnp.float32)))).all()


def test_narrow_widths_give_the_full_width_terms():
    """Gauss-Newton terms, gradients and LM results at the narrowest covering width equal
    the full table's; a batch with one lane using a high slot runs the full width."""
    import symjax_sr._kernels  # noqa: F401
    from symjax_sr._evaluate import get_evaluator
    from symjax_sr._optimise._linalg import tangent_widths, width_branch
    from symjax_sr._optimise._lm import levenberg_marquardt
    from symjax_sr._optimise._objective import Objective

    assert tangent_widths((4, 2, 9), 8) == (2, 4, 8)
    assert tangent_widths((), 8) == (8,)
    ev = get_evaluator("switch", OPS)
    rng = np.random.default_rng(3)
    X = rng.uniform(-2, 2, (40, 2)).astype(np.float32)
    Xt, y = jnp.asarray(X.T), jnp.asarray(2.5 * X[:, 0] * np.sin(1.3 * X[:, 1]))
    trees = [sin_tree(2.0, 1.0), exp_tree(1.0, 0.2), rational_tree(0.0, 4.0), line_tree(0.5, 1.0)]
    pop = stack_trees(trees, L, 8)
    for extra in (False, True):
        free = np.arange(8)[None] < np.asarray(constant_count(pop))[:, None]
        if extra:  # one lane "uses" slot 6: no narrow width covers the batch
            free[0, 6] = True
        free = jnp.asarray(free)
        assert int(width_branch(free, (2, 4, 8))) == (2 if extra else 0)
        objs = [Objective(ev, pop.op, pop.arg, free, Xt, y, None, narrow_widths=w)
                for w in ((), (2, 4))]
        c = pop.const
        for f in (lambda o, c=c: o.gauss_newton(c), lambda o, c=c: o.loss_and_grad(c),
                  lambda o, c=c: levenberg_marquardt(o, c, jnp.ones(4, bool), iterations=6,
                                                     f_calls_limit=None, damping=0.1)):
            full, narrow = (jax.tree.leaves(jax.jit(f)(o)) for o in objs)
            for u, v in zip(full, narrow, strict=True):
                np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=2e-4, atol=1e-5)

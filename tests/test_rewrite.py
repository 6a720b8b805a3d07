"""Hall-of-fame rewrites under the signs of the training data (`_rewrite.py`)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import sympy

from symjax_sr import make_operator_set, parse_expression
from symjax_sr._numpy_eval import evaluate_tree_numpy
from symjax_sr._operators import CONST
from symjax_sr._options import SearchOptions
from symjax_sr._rewrite import _complexity_ok, rewrite_entries
from symjax_sr._run import HofEntry
from symjax_sr._sympy import tree_to_sympy

OPS = make_operator_set(["+", "-", "*", "/", "^"], ["sqrt", "exp", "log"])
X0, X1, X2 = sympy.symbols("x0 x1 x2")


def _entries(strings, X, y):
    """Hall-of-fame entries (simplest first) of expressions in the string syntax."""
    out, best = [], np.inf
    for s in strings:
        tree = parse_expression(s, OPS)
        pred, _, _ = evaluate_tree_numpy(tree, X, OPS)
        loss = float(np.mean((pred - y) ** 2))
        out.append(HofEntry(tree.size, loss, tree, bool(loss < best)))
        best = min(best, loss)
    return out


def _data(low, n=200, f=2, seed=0):
    X = np.random.default_rng(seed).uniform(low, low + 4, (n, f))
    return X, X[:, 1] / X[:, 0] ** 2


def test_a_square_root_of_an_inverse_square_becomes_a_division_on_positive_data():
    """sqrt(x0^-2) is 1/x0 where x0 > 0: the rewrite enters the hall of fame at its
    lower complexity, the entry it came from stays (now off the front)."""
    X, y = _data(1.0)
    opts = SearchOptions(OPS, 2, maxsize=20)
    entries = _entries(["x1", "(x1 * sqrt(x0 ^ -2.0)) / x0"], X, y)
    out = rewrite_entries(entries, X, y, None, opts)
    assert [e.complexity for e in out] == [1, 5, 8]
    new = out[1]
    assert sympy.simplify(tree_to_sympy(new.tree, OPS) - X1 / X0**2) == 0
    assert new.loss < 1e-20 and new.pareto
    assert out[2].tree is entries[1].tree and not out[2].pareto
    assert out[0].tree is entries[0].tree and out[0].loss == entries[0].loss


def test_no_rewrite_where_a_feature_takes_negative_values():
    """sqrt(x0^-2) is 1/|x0| on the reals: with x0 in [-2, 2] there is no simpler form
    in these operators, and the hall of fame comes back as it was."""
    X, _ = _data(-2.0)
    y = X[:, 1] / np.abs(X[:, 0])
    opts = SearchOptions(OPS, 2, maxsize=20)
    entries = _entries(["x1 * sqrt(x0 ^ -2.0)"], X, y)
    assert rewrite_entries(entries, X, y, None, opts) is entries


def test_a_rewrite_that_breaks_a_constraint_is_not_taken():
    """exp(cos(x0 - pi/2)) (a snapped phase) is exp(sin(x0)); with a nested constraint
    that keeps sin out of exp the rewrite is not a member the search could hold."""
    ops = make_operator_set(["-"], ["exp", "sin", "cos"])
    X = np.random.default_rng(1).uniform(-3, 3, (100, 1))
    y = np.exp(np.sin(X[:, 0]))
    tree = parse_expression("exp(cos(x0 - 1.5707963267948966))", ops)
    tree = dataclasses.replace(tree, value=tree.value.astype(np.float32))
    pred, _, _ = evaluate_tree_numpy(tree, X, ops)
    entries = [HofEntry(5, float(np.mean((pred - y) ** 2)), tree, True)]
    [new, old] = rewrite_entries(entries, X, y, None, SearchOptions(ops, 1, maxsize=20))
    assert new.complexity == 3 and old.tree is entries[0].tree and not old.pareto
    assert tree_to_sympy(new.tree, ops) == sympy.exp(sympy.sin(X0))
    bounded = SearchOptions(ops, 1, maxsize=20,
                            nested_constraints=((ops.opcode("exp"), ops.opcode("sin"), 0),))
    assert rewrite_entries(entries, X, y, None, bounded) is entries


def test_a_rewrite_does_not_displace_a_better_entry():
    """The slot of the rewrite's complexity (5: x1 * x0^-2) holds a lower loss already:
    the hall of fame comes back as it was."""
    X, _ = _data(1.0)
    y = 0.5 * X[:, 0] + X[:, 1] + 0.01 * X[:, 1] / X[:, 0] ** 2
    opts = SearchOptions(OPS, 2, maxsize=20)
    entries = _entries(["(x0 * 0.5) + x1", "(x1 * sqrt(x0 ^ -2.0)) / x0"], X, y)
    assert entries[0].complexity == 5 and entries[0].loss < entries[1].loss
    assert rewrite_entries(entries, X, y, None, opts) is entries
    # with that slot empty, the rewrite takes it
    out = rewrite_entries(entries[1:], X, y, None, opts)
    assert [e.complexity for e in out] == [5, 8]


def test_a_constant_that_sympy_folds_is_snapped_after_the_rewrite():
    """(0.7071*x0)*(2.8286*x1) on data 2*x0*x1 with 1% noise: the refit (`_polish.py`) moves
    the product of the constants to the least-squares slope, and neither constant is near a
    closed form or fraction, so snapping keeps both; SymPy folds them into one constant
    (complexity 5 from 7), and that new constant is snapped to 2 (`rewrite_entries`)."""
    from symjax_sr._run import _finish

    X = np.random.default_rng(1).uniform(1, 5, (500, 2))
    y = 2 * X[:, 0] * X[:, 1]
    y = y + 0.01 * np.sqrt(np.mean(y**2)) * np.random.default_rng(2).normal(size=len(y))
    opts = SearchOptions(OPS, 2, maxsize=20)
    entries = _entries(["x0", "(0.7071 * x0) * (2.8286 * x1)"], X, y)
    out = _finish(entries, opts, X, y, None, None)
    assert [e.complexity for e in out] == [1, 5, 7]
    assert sympy.simplify(tree_to_sympy(out[1].tree, OPS) - 2 * X0 * X1) == 0
    # the 7-node entry keeps its form with the least-squares slope, below the snapped 2's
    # loss, so both are on the front
    feature = X[:, 0] * X[:, 1]
    slope = float(feature @ y / (feature @ feature))
    c = out[2].tree.value[out[2].tree.op == CONST]
    np.testing.assert_allclose(c[0] * c[1], slope, rtol=1e-6)
    assert abs(slope - 2) > 1e-3 and out[2].loss < out[1].loss
    assert out[1].pareto and out[2].pareto


def test_a_common_factor_of_a_fraction_is_cancelled():
    """a*x1/(a*x1 + a) and 1 - 1/(x1 + 1) are x1/(x1 + 1) (complexity 5) on any data: the
    search reaches them first when the data are x1/(1 + x1), and `sympy.cancel` gives
    the shorter form, with the same loss."""
    X = np.random.default_rng(0).uniform(0, 2, (200, 2))
    y = X[:, 1] / (1 + X[:, 1])
    opts = SearchOptions(OPS, 2, maxsize=20)
    for s, c in [("(1.918 * x1) / ((1.918 * x1) + 1.918)", 9), ("1.0 - (1.0 / (x1 + 1.0))", 7)]:
        entries = _entries([s], X, y)
        assert entries[0].complexity == c
        new, old = rewrite_entries(entries, X, y, None, opts)
        assert new.complexity == 5 and new.pareto and new.loss < 1e-20
        assert sympy.simplify(tree_to_sympy(new.tree, OPS) - X1 / (X1 + 1)) == 0
        assert old.tree is entries[0].tree and not old.pareto


def test_a_nested_polynomial_is_factored():
    """Horner-like x0*(x0*(x0*x0 + x0) + x0) + x0 (13 nodes) is x0*(x0 + 1)*(x0^2 + 1) (11)
    by `sympy.factor`, with and without `^` (x0*x0 is 3 nodes as x0^2 is)."""
    X = np.random.default_rng(0).uniform(-1, 1, (200, 1))
    x = X[:, 0]
    y = x**4 + x**3 + x**2 + x
    for ops in (OPS, make_operator_set(["+", "-", "*", "/"], [])):
        tree = parse_expression("x0 * (x0 * (x0 * x0 + x0) + x0) + x0", ops)
        pred, _, _ = evaluate_tree_numpy(tree, X, ops)
        entries = [HofEntry(13, float(np.mean((pred - y) ** 2)), tree, True)]
        new, old = rewrite_entries(entries, X, y, None, SearchOptions(ops, 1, maxsize=20))
        assert (new.complexity, old.complexity) == (11, 13)
        assert sympy.nsimplify(tree_to_sympy(new.tree, ops)) == sympy.factor(X0**4 + X0**3 + X0**2 + X0)


def test_the_polynomial_algebra_sees_floats_as_symbols(monkeypatch):
    """`sympy.factor` turns a float into a rational with a denominator near 2^52, on which
    its multivariate factorisation has run for minutes (a hall of fame of feynman-I.12.1):
    `_forms` hands cancel and factor the expression with one symbol per float value, and
    puts the values back. Magnitudes within `CLOSE` are one symbol, so that they cancel."""
    from symjax_sr import _rewrite

    seen = []
    for name in ("cancel", "factor"):
        real = getattr(sympy, name)

        def spy(e, _real=real):
            seen.append(e)
            return _real(e)

        monkeypatch.setattr(sympy, name, spy)
    a, b = sympy.Float(1.918), sympy.Float(0.3125)
    forms = _rewrite._forms(a * X1 / (a * X1 + a) + b * X0)
    assert len(seen) == 2 and not any(e.atoms(sympy.Float) for e in seen)
    assert len({s for e in seen for s in e.free_symbols} - {X0, X1}) == 2  # one per value
    assert any(sympy.simplify(f - (X1 / (X1 + 1) + b * X0)) == 0 and f.atoms(sympy.Float) == {b}
               for f in forms[1:])
    # an odefield-dy hall of fame: its constants, fitted apart, agree to float32 precision
    a1, a2 = sympy.Float(1.09782576560974), sympy.Float(1.09782588481903)
    forms = _rewrite._forms(a1 * X1 / (-a2 * X1 - a1))
    assert any(f == -X1 / (X1 + 1) for f in forms[1:])
    # values further apart than `CLOSE` stay apart
    c = sympy.Float(1.01)
    assert not any(f == -X1 / (X1 + 1) for f in _rewrite._forms(a1 * X1 / (-c * X1 - a1)))


def test_checking_forms_of_every_size_compiles_one_program():
    """The size and constraint check of a rewritten form is one compiled program for every
    size (the members' shapes do not change with it); an eager roll by the size compiled
    one program per size, 16 in a small fit's rewrites."""
    opts = SearchOptions(OPS, 2, maxsize=20)
    forms = ["x0", "x0 + x1", "x0 * x1 + x0", "sqrt(x0) * x1 - x0 / x1", "exp(x0) + x1 ^ 2.5"]
    trees = [parse_expression(s, OPS) for s in forms]
    # the check's own answers: complexity and whether the search could hold the form
    assert _complexity_ok(trees[0], opts) == (1, True)
    events, recording = [], [True]
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *_, **__: recording[0] and events.append(name))
    try:
        got = [_complexity_ok(t, opts) for t in trees]
    finally:
        recording[0] = False  # listeners cannot be removed; this one stops collecting
    assert [c for c, _ in got] == [t.size for t in trees] and all(ok for _, ok in got)
    assert "/jax/core/compile/backend_compile_duration" not in events

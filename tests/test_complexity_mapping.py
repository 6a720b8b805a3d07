"""`complexity_mapping`: the view against host-side counts, and a search the mapping steers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _strategies import trees
from hypothesis import given

from symjax_sr import ExpressionView, PySRRegressor, make_operator_set
from symjax_sr._complexity import mapped_complexity
from symjax_sr._operators import CONST, VAR
from symjax_sr._tree import stack_trees

OPS = make_operator_set(["+", "*"], ["sin", "exp"])


@given(trees(OPS, n_features=3, max_leaves=6))
def test_view_counts_match_the_host_tree(tree):
    pop = stack_trees([tree], 64, max(1, len(tree.constants)))
    e = ExpressionView(pop.op[0], pop.arg[0], OPS)
    assert int(e.size) == tree.size
    assert int(e.depth) == tree.depth(OPS)
    assert int(e.count("variable")) == int((tree.op == VAR).sum())
    assert int(e.count("constant")) == int((tree.op == CONST).sum())
    assert int(e.count("sin")) == int((tree.op == OPS.opcode("sin")).sum())
    assert bool(e.uses_feature(1)) == bool(((tree.op == VAR) & (tree.arg == 1)).any())


def test_mapped_complexity_rounds_and_is_at_least_one():
    op = jnp.zeros((2, 5), jnp.int32).at[:, -1].set(VAR)
    out = mapped_complexity(lambda e: e.size * 0.2, op, jnp.zeros_like(op), OPS)
    np.testing.assert_array_equal(np.asarray(out), [1.0, 1.0])
    out = mapped_complexity(lambda e: 3.6 * e.size, op.reshape(1, 2, 5), jnp.zeros((1, 2, 5), jnp.int32), OPS)
    assert out.shape == (1, 2) and float(out[0, 0]) == 4.0


def _fit(mapping, **kw):
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (64, 2))
    y = X[:, 0] * X[:, 1] + X[:, 0]
    m = PySRRegressor(binary_operators=["+", "*"], unary_operators=["sin"], niterations=6,
                      populations=4, population_size=20, maxsize=12, random_state=0,
                      complexity_mapping=mapping, progress=False, temp_equation_file=True,
                      verbosity=0, **kw)
    return m.fit(X, y)


def _sin_heavy(e):
    """A sine costs 10; everything else PySR's default."""
    return e.size + 9 * e.count("sin")


def test_the_mapping_sets_the_complexity_and_steers_the_search():
    m = _fit(_sin_heavy)
    table = m.equations_
    for tree, c in zip(table["tree"], table["complexity"]):
        sines = int((tree.op == m.operators_.opcode("sin")).sum())
        assert c == tree.size + 9 * sines
        assert c <= 12
    # maxsize bounds the mapped complexity, so at most one sine fits, and only in tiny trees
    assert all(int((t.op == m.operators_.opcode("sin")).sum()) <= 1 for t in table["tree"])
    assert table["loss"].min() < 1e-6, table  # x0*x1 + x0 needs no sine


def test_mapping_errors():
    X, y = np.ones((8, 2)), np.ones(8)
    with pytest.raises(TypeError, match="callable"):
        PySRRegressor(complexity_mapping="size", niterations=1).fit(X, y)
    with pytest.raises(TypeError, match="failed on a one-leaf expression.*'tan'"):
        PySRRegressor(complexity_mapping=lambda e: e.count("tan"), niterations=1).fit(X, y)
    with pytest.raises(TypeError, match="one number per expression"):
        PySRRegressor(complexity_mapping=lambda e: e.op, niterations=1).fit(X, y)
    with pytest.raises(ValueError, match="`complexity_mapping` and `complexity_of_operators`"):
        PySRRegressor(complexity_mapping=_sin_heavy, complexity_of_operators={"sin": 2},
                      niterations=1).fit(X, y)


def test_guess_complexity_uses_the_mapping():
    X, y = np.random.default_rng(1).normal(size=(16, 2)), np.ones(16)
    with pytest.raises(ValueError, match="complexity 15"):
        PySRRegressor(complexity_mapping=_sin_heavy, guesses=["sin(x0) + x1 * x0"], maxsize=12,
                      unary_operators=["sin"], niterations=1).fit(X, y)


def test_view_is_traceable():
    f = jax.jit(lambda o, a: ExpressionView(o, a, OPS).depth)
    op = jnp.zeros((5,), jnp.int32).at[-1].set(VAR)
    assert int(f(op, jnp.zeros_like(op))) == 1

import jax
import numpy as np
import pytest
from _tolerance import within_tolerance

import symjax_sr as sr
from symjax_sr._random import host_random_trees, numpy_rng_population
from symjax_sr._tree import stack_trees


@pytest.mark.parametrize(
    "binary, unary", [(["+", "-", "*", "/"], ["sin", "exp"]), (["+", "*"], []), ([], ["cos", "neg"])]
)
def test_random_population_valid(binary, unary):
    ops = sr.make_operator_set(binary, unary) if binary else sr.OperatorSet(
        tuple(sr.get_operator(u) for u in unary))
    pop = numpy_rng_population(3, 200, ops, 3, 20, 6, min_size=1, max_size=20, maxdepth=7)
    for t in pop.trees():
        t.validate(ops, 3)
        assert 1 <= t.size <= 20
        assert t.depth(ops) <= 7
        assert len(t.constants) <= 6


def test_sizes_are_exact_when_feasible():
    ops = sr.make_operator_set(["+", "*"], ["cos"])
    for size in [1, 2, 5, 16]:
        op, arg, const = jax.jit(sr.random_tree, static_argnums=(2, 3, 4, 5))(
            jax.random.key(size), size, ops, 2, 16, 8)
        assert int((np.asarray(op) != 0).sum()) == size
    only_binary = sr.make_operator_set(["+"], [])
    op, _, _ = sr.random_tree(jax.random.key(0), 6, only_binary, 2, 16, 8)
    assert int((np.asarray(op) != 0).sum()) == 5  # even sizes are impossible: one less


def test_same_key_same_population():
    ops = sr.make_operator_set(["+", "*"], ["cos"])
    a = numpy_rng_population(7, 50, ops, 2, 16, 8)
    b = numpy_rng_population(7, 50, ops, 2, 16, 8)
    c = numpy_rng_population(8, 50, ops, 2, 16, 8)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert not np.array_equal(a.op, c.op)


def test_bad_sizes():
    ops = sr.make_operator_set(["+"], [])
    with pytest.raises(ValueError, match="min_size"):
        sr.random_population(jax.random.key(0), 4, ops, 1, 8, 4, min_size=5, max_size=3)


@pytest.mark.parametrize(
    "binary, unary", [(["+", "-", "*", "/"], ["sin", "exp"]), (["+", "*"], []), ([], ["cos", "neg"])]
)
def test_host_trees_are_valid_cover_the_sizes_and_evaluate_like_numpy(binary, unary):
    """The NumPy draws `choose_evaluator` times the kernels on: well-formed trees, every
    size up to `max_size` (odd sizes only with binary operators alone), at most `nconst`
    constants, the same draws from the same seed, and, stacked into a population, the
    kernel's predictions are the NumPy evaluation's (to rounding)."""
    ops = sr.make_operator_set(binary, unary) if binary else sr.OperatorSet(
        tuple(sr.get_operator(u) for u in unary))
    trees = host_random_trees(1, 300, ops, 3, 15, 2)
    sizes = set()
    for t in trees:
        t.validate(ops, 3)
        assert len(t.constants) <= 2
        sizes.add(t.size)
    assert sizes == (set(range(1, 16, 2)) if not unary else set(range(1, 16)))
    again = host_random_trees(1, 300, ops, 3, 15, 2)
    assert all(a == b for a, b in zip(trees, again))
    assert any(a != b for a, b in zip(trees, host_random_trees(2, 300, ops, 3, 15, 2)))
    X = np.random.default_rng(0).uniform(0.5, 2, (40, 3)).astype(np.float32)
    pred, ok = sr.evaluate(stack_trees(trees[:60], 16, 2), X, ops)
    for i, t in enumerate(trees[:60]):
        good, bad_rows = within_tolerance(t, X, np.asarray(pred[i]), np.asarray(ok[i]), ops)
        assert good, (t, bad_rows)

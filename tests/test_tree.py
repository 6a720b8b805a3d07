import numpy as np
import pytest
from _strategies import ALL_OPERATORS, trees
from hypothesis import given

import symjax_sr as sr
from symjax_sr._operators import CONST, VAR
from symjax_sr._tree import structure

OPS = ALL_OPERATORS


def _depths(tree, ops):
    """Host recursion: (start, depth) of each node, computed independently of `structure`."""
    arity = ops.arity_table[tree.op]
    stack, start = [], []
    for i, a in enumerate(arity):
        first = i
        for _ in range(a):
            first = stack.pop()
        stack.append(first)
        start.append(first)
    depth = [0] * len(arity)
    for i in reversed(range(len(arity))):
        parent = next((j for j in range(i + 1, len(arity)) if start[j] <= i), None)
        depth[i] = 1 if parent is None else depth[parent] + 1
    return np.array(start), np.array(depth)


@given(trees())
def test_structure_matches_host(tree):
    pop = sr.stack_trees([tree], 40, 24)
    level, start, depth = (np.asarray(a) for a in structure(pop.op[0], OPS.arity_table))
    off = 40 - tree.size
    h_start, h_depth = _depths(tree, OPS)
    np.testing.assert_array_equal(start[off:] - off, h_start)
    np.testing.assert_array_equal(depth[off:], h_depth)
    assert depth.max() == tree.depth(OPS)
    np.testing.assert_array_equal(level[off:], np.cumsum(1 - OPS.arity_table[tree.op]))


@given(trees())
def test_stack_and_unstack_round_trip(tree):
    tree.validate(OPS, 3)
    pop = sr.stack_trees([tree, tree], 40, 24)
    assert pop.tree(1) == tree
    assert int(pop.size[0]) == tree.size
    consts = np.asarray(pop.const[0])[: len(tree.constants)]
    np.testing.assert_array_equal(consts, tree.constants)


def test_validate_errors():
    ops = sr.make_operator_set(["+"], ["cos"])
    plus = ops.opcode("+")
    with pytest.raises(ValueError, match="not a valid postfix"):
        sr.Tree([VAR, plus], [0, 0], [0, 0]).validate(ops)
    with pytest.raises(ValueError, match="not a valid postfix"):
        sr.Tree([VAR, VAR], [0, 0], [0, 0]).validate(ops)
    with pytest.raises(ValueError, match="feature"):
        sr.Tree([VAR], [5], [0]).validate(ops, 2)
    with pytest.raises(ValueError, match="opcode"):
        sr.Tree([99], [0], [0]).validate(ops)
    with pytest.raises(ValueError, match="Empty"):
        sr.Tree([], [], []).validate(ops)


def test_stack_trees_limits():
    t = sr.Tree([CONST, CONST, 3], [0, 0, 0], [1.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="raise `maxsize`"):
        sr.stack_trees([t], 2, 4)
    with pytest.raises(ValueError, match="constants"):
        sr.stack_trees([t], 4, 1)


def test_complexity():
    ops = sr.make_operator_set(["+", "*"], ["cos"])
    # cos(x0 * 2.5) + x1
    t = sr.Tree([VAR, CONST, ops.opcode("*"), ops.opcode("cos"), VAR, ops.opcode("+")],
                [0, 0, 0, 0, 1, 0], [0, 2.5, 0, 0, 0, 0])
    unit = sr.Complexities.make(ops, 2)
    assert unit.is_unit and unit.of_tree(t) == 6
    c = sr.Complexities.make(ops, 2, complexity_of_operators={"cos": 3, "*": 2},
                             complexity_of_constants=2, complexity_of_variables=[1, 4])
    assert c.of_tree(t) == 1 + 2 + 2 + 3 + 4 + 1
    pop = sr.stack_trees([t, t], 8, 4)
    np.testing.assert_array_equal(np.asarray(c.of_population(pop)), [13, 13])
    np.testing.assert_array_equal(c.of_population(pop, xp=np), [13, 13])
    with pytest.raises(ValueError, match="one per feature"):
        sr.Complexities.make(ops, 2, complexity_of_variables=[1, 2, 3])

"""Equation strings: exact round trips over random trees, real PySR strings, error paths."""

from __future__ import annotations

import numpy as np
import pytest
from _roundtrip import (
    N_FEATURES,
    all_operators,
    builtin_operators,
    magnitude_floats,
    random_trees,
    set_constants,
)
from hypothesis import given
from hypothesis import strategies as st

from symjax_sr._numpy_eval import evaluate_tree_numpy
from symjax_sr._operators import CONST, VAR, make_operator_set
from symjax_sr._strings import infer_operator_set, parse_expression, tree_to_string
from symjax_sr._tree import Tree

NAMES = ("alpha", "b_2", "zeta")


def _same(a: Tree, b: Tree) -> bool:
    """Exact equality including the constants' dtype and the sign of zero (not of NaN)."""
    real = ~np.isnan(a.value)
    return a == b and a.value.dtype == b.value.dtype and np.array_equal(
        np.signbit(a.value[real]), np.signbit(b.value[real])
    )


@given(
    seed=st.integers(0, 2**31 - 1),
    consts=st.lists(magnitude_floats(64), min_size=1, max_size=5),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_string_round_trip_exact(seed, consts, dtype):
    ops = all_operators()
    for tree in random_trees(seed):
        tree = set_constants(tree, consts, dtype)
        s = tree_to_string(tree, ops)
        back = parse_expression(s, ops, dtype=dtype)
        assert _same(back, tree), (s, tree, back)
        named = tree_to_string(tree, ops, variable_names=NAMES)
        assert _same(parse_expression(named, ops, variable_names=NAMES, dtype=dtype), tree)


@given(
    value=st.one_of(
        st.floats(width=32, allow_subnormal=True), st.floats(width=64, allow_subnormal=True)
    ),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_every_float_round_trips(value, dtype):
    """Shortest printing reads back exactly: subnormals, extremes, inf, nan, -0.0."""
    ops = make_operator_set(["*", "^"], [])
    with np.errstate(over="ignore"):
        c = dtype(value)
    for tree in (
        Tree([CONST], [0], np.array([c], dtype)),
        Tree([CONST, VAR, ops.opcode("^")], [0, 0, 0], np.array([c, 0, 0], dtype)),
        Tree([VAR, CONST, ops.opcode("*")], [1, 0, 0], np.array([0, c, 0], dtype)),
    ):
        s = tree_to_string(tree, ops)
        assert _same(parse_expression(s, ops, dtype=dtype), tree), s


def test_float32_text_is_short():
    ops = make_operator_set(["*"], [])
    tree = Tree([VAR, CONST, ops.opcode("*")], [0, 0, 0], np.array([0, 0.1, 0], np.float32))
    assert tree_to_string(tree, ops) == "(x0 * 0.1)"
    assert tree_to_string(tree.with_constants([3.0]), ops) == "(x0 * 3.0)"
    t64 = Tree(tree.op, tree.arg, np.array([0, 0.1, 0]))
    assert tree_to_string(t64, ops) == "(x0 * 0.1)"
    assert tree_to_string(t64.with_constants([1 / 3]), ops, precision=4) == "(x0 * 0.3333)"


@given(
    seed=st.integers(0, 2**31 - 1),
    consts=st.lists(magnitude_floats(64), min_size=1, max_size=5),
)
def test_precision_is_significant_digits(seed, consts):
    ops = all_operators()
    for tree in random_trees(seed):
        tree = set_constants(tree, consts, np.float64)
        back = parse_expression(tree_to_string(tree, ops, precision=5), ops)
        np.testing.assert_array_equal(back.op, tree.op)
        np.testing.assert_allclose(back.constants, tree.constants, rtol=1e-4)


@given(seed=st.integers(0, 2**31 - 1))
def test_infer_operator_set_reads_back(seed):
    """Strings written over the built-ins parse with the inferred set to the same string."""
    ops = builtin_operators()
    trees = random_trees(seed, "builtin")
    strings = [tree_to_string(t, ops) for t in trees]
    inferred = infer_operator_set(strings)
    used = {ops.operator(o).name for t in trees for o in t.op if o > CONST}
    assert set(inferred.names) == used
    X = np.random.default_rng(seed).normal(size=(20, N_FEATURES))
    for t, s in zip(trees, strings, strict=True):
        back = parse_expression(s, inferred, dtype=t.value.dtype)
        assert tree_to_string(back, inferred) == s
        a, ok_a, _ = evaluate_tree_numpy(t, X, ops)
        b, ok_b, _ = evaluate_tree_numpy(back, X, inferred)
        np.testing.assert_array_equal(ok_a, ok_b)
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------
# Real PySR strings and the grammar


PYSR = make_operator_set(["+", "-", "*", "/", "^"], ["cos", "square", "log", "exp"])


@pytest.mark.parametrize(
    "string, expected",
    [
        ("((x0 * 2.5) + cos(x1))", "((x0 * 2.5) + cos(x1))"),
        ("(x0 ^ 2.0) - (-0.5)", "((x0 ^ 2.0) - -0.5)"),
        ("square(x1) * 3.2f0", "(square(x1) * 3.2)"),
        ("safe_log(x0)", "log(x0)"),
        ("x0 ** 2", "(x0 ^ 2.0)"),
        ("pow(x0, 3)", "(x0 ^ 3.0)"),
        ("x0 + x1 * x2 - x3 / 2", "((x0 + (x1 * x2)) - (x3 / 2.0))"),
        ("x0 - x1 - x2", "((x0 - x1) - x2)"),
        ("x0 / x1 / x2", "((x0 / x1) / x2)"),
        ("x0 ^ x1 ^ x2", "(x0 ^ (x1 ^ x2))"),
        ("2 ^ -x0", "(2.0 ^ (-1.0 * x0))"),
        ("-x0 ^ 2", "(-1.0 * (x0 ^ 2.0))"),
        ("-2.5 * x0", "(-2.5 * x0)"),
        ("-(2.5) * x0", "(-2.5 * x0)"),
        ("--x0", "(-1.0 * (-1.0 * x0))"),
        ("+x0", "x0"),
        ("x0 * -2.5", "(x0 * -2.5)"),
        ("1.0e-5 + 1f-3", "(1e-05 + 0.001)"),
        ("x0 + Inf", "(x0 + Inf)"),
        ("x0 * -Inf", "(x0 * -Inf)"),
        ("NaN", "NaN"),
        ("  exp( x0 )\t", "exp(x0)"),
        ("3", "3.0"),
    ],
)
def test_pysr_strings(string, expected):
    assert tree_to_string(parse_expression(string, PYSR), PYSR) == expected


def test_julia_float32_literal_sets_dtype():
    assert parse_expression("square(x1) * 3.2f0", PYSR).value.dtype == np.float32
    assert parse_expression("x1 * 3.2", PYSR).value.dtype == np.float64
    assert parse_expression("x1 * 3.2", PYSR, dtype=np.float32).constants[0] == np.float32(3.2)


def test_unary_minus_uses_neg_when_available():
    ops = make_operator_set(["+", "*"], ["neg"])
    assert tree_to_string(parse_expression("-x0 + -(x1 * 2)", ops), ops) == (
        "(neg(x0) + neg((x1 * 2.0)))"
    )
    only_plus = make_operator_set(["+"], [])
    with pytest.raises(ValueError, match="needs `neg`.*or `\\*`"):
        parse_expression("-x0", only_plus)
    assert parse_expression("-2.0", only_plus).constants[0] == -2.0


def test_values_of_parsed_string():
    tree = parse_expression("((x0 * 2.5) + cos(x1))", PYSR)
    X = np.array([[1.0, 0.0], [2.0, np.pi]])
    pred, ok, _ = evaluate_tree_numpy(tree, X, PYSR)
    np.testing.assert_allclose(pred, [3.5, 4.0])
    assert ok.all()


def test_variable_names():
    tree = parse_expression("alpha * cos(b_2) + x0", PYSR, variable_names=["alpha", "b_2", "x0"])
    np.testing.assert_array_equal(tree.arg[tree.op == VAR], [0, 1, 2])
    assert tree_to_string(tree, PYSR, ["alpha", "b_2", "x0"]) == "((alpha * cos(b_2)) + x0)"
    # A variable named like a function or a non-finite literal is still a variable.
    tree = parse_expression("cos * Inf + cos(Inf)", PYSR, variable_names=["cos", "Inf"])
    assert tree_to_string(tree, PYSR, ["cos", "Inf"]) == "((cos * Inf) + cos(Inf))"
    with pytest.raises(ValueError, match="only 1 names"):
        tree_to_string(parse_expression("x3", PYSR), PYSR, ["a"])


def test_infer_operator_set_pysr_strings():
    ops = infer_operator_set(
        ["((x0 * 2.5) + cos(x1))", "(x0 ^ 2.0) - (-0.5)", "square(x1) * 3.2f0", "safe_log(x0)"]
    )
    assert ops.names == ("+", "-", "*", "^", "square", "log", "cos")
    assert infer_operator_set(["-x0"]).names == ("neg",)
    with pytest.raises(ValueError, match="no operators"):
        infer_operator_set(["x0", "-2.5"])
    with pytest.raises(ValueError, match="Unknown function 'softclip'.*unary_operators"):
        infer_operator_set(["softclip(x0)"])


# ---------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "string, match",
    [
        ("coss(x0)", r"Unknown function 'coss'\. Did you mean 'cos'.*position 0"),
        ("x0 + y1", r"Unknown variable 'y1'.*x0, x1.*position 5"),
        ("(x0 + 1", r"Expected '\)' closing the '\(' at position 0.*end of the string"),
        ("cos(x0", r"'\)' closing the call to 'cos'"),
        ("x0 + 1)", r"unbalanced '\)'.*position 6"),
        ("x0 x1", r"Trailing text.*unexpected 'x1'.*position 3"),
        ("2x0", r"Trailing text.*'x0'"),
        ("x0 + ", r"Expected a number, a name or '\('.*end of the string"),
        ("x0 $ 1", r"Unexpected character '\$'.*position 3"),
        ("cos(x0, x1)", r"`cos` takes 1 argument\(s\), got 2"),
        ("max(x0, x1)", r"'max' is not in this operator set.*add 'max' to `binary_operators`"),
        ("sin(x0)", r"'sin' is not in this operator set.*`unary_operators`"),
        ("x0 mod x1", r"Trailing text"),
        ("", r"Empty equation string"),
        ("()", r"Expected a number, a name or '\('.*'\)'"),
    ],
)
def test_parse_errors(string, match):
    with pytest.raises(ValueError, match=match):
        parse_expression(string, PYSR)


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"Unknown variable 'alpah'\. Did you mean 'alpha'"):
        parse_expression("alpah + 1", PYSR, variable_names=["alpha"])
    with pytest.raises(ValueError, match="must be identifiers"):
        parse_expression("x0", PYSR, variable_names=["a b"])
    with pytest.raises(ValueError, match="more than once"):
        parse_expression("x0", PYSR, variable_names=["a", "a"])
    with pytest.raises(ValueError, match="add '\\+' to `binary_operators`"):
        parse_expression("x0 + x1", make_operator_set(["*"], []))
    with pytest.raises(TypeError, match="Equation strings are `str`"):
        parse_expression(1.5, PYSR)
    with pytest.raises(ValueError, match="Unknown function 'foo'"):
        parse_expression("foo(x0)", PYSR)

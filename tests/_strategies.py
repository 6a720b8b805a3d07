"""Hypothesis strategies shared by the tests: random expression trees and data."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from symjax_sr import OPERATORS, Tree, make_operator_set
from symjax_sr._operators import CONST, VAR, OperatorSet

#: Every built-in operator, binary then unary.
ALL_OPERATORS: OperatorSet = make_operator_set(
    [o.name for o in OPERATORS.values() if o.arity == 2],
    [o.name for o in OPERATORS.values() if o.arity == 1],
)

#: Constants of all magnitudes, including the ones that trigger domain errors.
constants = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0, -2.0, 3.0, 1e-30, 1e30, -1e30, 100.0, 88.8]),
    st.floats(-1e3, 1e3, allow_nan=False, width=32),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)


def _flatten(node, out):
    kind = node[0]
    if kind == "var":
        out.append((VAR, node[1], 0.0))
    elif kind == "const":
        out.append((CONST, 0, node[1]))
    else:
        for child in node[2:]:
            _flatten(child, out)
        out.append((node[1], 0, 0.0))
    return out


@st.composite
def trees(draw, operators: OperatorSet = ALL_OPERATORS, n_features: int = 3, max_leaves: int = 8):
    """A random valid tree over `operators`, as a host `Tree`."""
    unary = [operators.opcode(o.name) for o in operators.unary]
    binary = [operators.opcode(o.name) for o in operators.binary]
    leaves = st.one_of(
        st.tuples(st.just("var"), st.integers(0, n_features - 1)),
        st.tuples(st.just("const"), constants),
    )

    def extend(children):
        options = []
        if unary:
            options.append(st.tuples(st.just("op"), st.sampled_from(unary), children))
        if binary:
            options.append(st.tuples(st.just("op"), st.sampled_from(binary), children, children))
        return st.one_of(options)

    node = draw(st.recursive(leaves, extend, max_leaves=max_leaves))
    flat = _flatten(node, [])
    op, arg, value = zip(*flat)
    return Tree(np.array(op), np.array(arg), np.array(value, dtype=np.float32))


#: Data values: ordinary ones plus values at domain boundaries.
data_values = st.one_of(
    st.floats(-3, 3, width=32),
    st.sampled_from([0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 10.0, -10.0, 100.0]),
)


@st.composite
def datasets(draw, n_features: int = 3, rows: int = 12):
    """`X [rows, n_features]` float32 with boundary values mixed in."""
    flat = draw(st.lists(data_values, min_size=rows * n_features, max_size=rows * n_features))
    return np.asarray(flat, dtype=np.float32).reshape(rows, n_features)

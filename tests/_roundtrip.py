"""Shared fixtures for the string and SymPy round-trip tests: operator sets and random trees."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import sympy
from hypothesis import strategies as st

from symjax_sr._operators import OPERATORS, make_operator_set
from symjax_sr._random import numpy_rng_population


def softclip(x):
    """A custom unary operator with a SymPy function head of its own."""
    return 2.0 * jnp.tanh(x / 2.0)


def hypot(x, y):
    """A custom binary operator whose SymPy form expands into built-ins."""
    return jnp.sqrt(x * x + y * y)


def np_softclip(x):
    return 2.0 * np.tanh(x / 2.0)


EXTRA_SYMPY = {
    "softclip": lambda x: sympy.Function("softclip")(x),
    "hypot": lambda x, y: sympy.sqrt(x**2 + y**2),
}


@functools.cache
def all_operators():
    """Every registry operator plus two custom ones."""
    binary = [n for n, o in OPERATORS.items() if o.arity == 2] + [hypot]
    unary = [n for n, o in OPERATORS.items() if o.arity == 1] + [softclip]
    return make_operator_set(binary, unary, EXTRA_SYMPY)


@functools.cache
def builtin_operators():
    binary = [n for n, o in OPERATORS.items() if o.arity == 2]
    unary = [n for n, o in OPERATORS.items() if o.arity == 1]
    return make_operator_set(binary, unary)


N_FEATURES = 3
LENGTH = 15
NCONST = 5
POP = 8


@functools.lru_cache(maxsize=64)
def _population(seed: int, which: str):
    ops = all_operators() if which == "all" else builtin_operators()
    pop = numpy_rng_population(seed, POP, ops, N_FEATURES, LENGTH, NCONST, min_size=1)
    return pop.trees()


def random_trees(seed: int, which: str = "all"):
    return _population(seed, which)


def magnitude_floats(width: int = 64):
    """Constants of every magnitude: 1e-30..1e30, both signs, zero, and plain normals."""
    mags = st.builds(
        lambda s, m, e: s * m * 10.0**e,
        st.sampled_from([-1.0, 1.0]),
        st.floats(1.0, 9.999),
        st.integers(-30, 30),
    )
    plain = st.floats(-10.0, 10.0, width=width)
    out = st.one_of(mags, plain, st.sampled_from([0.0, -0.0, 1.0, -1.0]))
    if width == 32:
        out = out.map(lambda v: float(np.float32(v)))
    return out


def set_constants(tree, values, dtype):
    """`tree` with `dtype` constants taken cyclically from `values`."""
    tree = type(tree)(tree.op, tree.arg, tree.value.astype(dtype))
    n = len(tree.constants)
    with np.errstate(over="ignore"):
        vals = np.array((list(values) * n)[:n], dtype=dtype)
    return tree.with_constants(vals)

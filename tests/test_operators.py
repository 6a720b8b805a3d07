import jax.numpy as jnp
import numpy as np
import pytest
import sympy

import symjax_sr as sr
from symjax_sr._operators import OPERATORS

PYSR_BUILTINS = {
    2: ["+", "-", "*", "/", "^", "max", "min", "mod"],
    1: ["neg", "square", "cube", "exp", "log", "log2", "log10", "log1p", "sqrt", "abs", "sin",
        "cos", "tan", "sinh", "cosh", "tanh", "asin", "acos", "atan", "asinh", "acosh", "atanh",
        "sign", "relu", "erf", "erfc", "gamma", "round", "floor", "ceil", "inv"],
}


@pytest.mark.parametrize("arity", [1, 2])
def test_registry_has_pysr_builtins(arity):
    for name in PYSR_BUILTINS[arity]:
        assert OPERATORS[name].arity == arity


def test_registry_is_immutable():
    with pytest.raises(TypeError):
        OPERATORS["foo"] = OPERATORS["+"]  # type: ignore[index]


@pytest.mark.parametrize("name", list(OPERATORS))
def test_jax_numpy_sympy_agree(name):
    op = OPERATORS[name]
    rng = np.random.default_rng(1)
    args = [rng.uniform(0.1, 0.9, 16) for _ in range(op.arity)]  # inside every domain
    if name == "acosh":
        args = [a + 1.0 for a in args]
    ref = op.numpy_fn(*args)
    got = np.asarray(op.jax_fn(*(jnp.asarray(a, jnp.float32) for a in args)))
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-6)
    syms = sympy.symbols(f"a0:{op.arity}")
    f = sympy.lambdify(syms, op.sympy_fn(*syms), modules=["scipy", "numpy"])
    np.testing.assert_allclose(np.asarray(f(*args), float) * np.ones(16), ref, rtol=1e-10, atol=1e-12)
    assert "{0}" in op.latex


@pytest.mark.parametrize(
    "name, args",
    [("log", [-1.0]), ("sqrt", [-1.0]), ("/", [0.0, 0.0]), ("exp", [800.0]), ("acosh", [0.5]),
     ("asin", [2.0]), ("log1p", [-2.0]), ("^", [-2.0, 0.5]), ("mod", [1.0, 0.0])],
)
def test_domain_errors_are_non_finite(name, args):
    op = OPERATORS[name]
    assert not np.isfinite(np.asarray(op.jax_fn(*(jnp.float32(a) for a in args))))
    with np.errstate(all="ignore"):
        assert not np.isfinite(op.numpy_fn(*(np.float64(a) for a in args)))


def test_safe_inputs_are_in_domain():
    for op in OPERATORS.values():
        val = op.jax_fn(*([jnp.float32(op.safe_input)] * op.arity))
        assert np.isfinite(np.asarray(val)), op.name


def test_unknown_operator_suggests():
    with pytest.raises(ValueError, match="Did you mean 'cos'"):
        sr.get_operator("cso")
    with pytest.raises(ValueError, match="Valid names"):
        sr.make_operator_set(["+"], ["notanop"])


def test_aliases():
    assert sr.get_operator("safe_log") is OPERATORS["log"]
    assert sr.get_operator("pow") is OPERATORS["^"]
    assert "mult" in sr.make_operator_set(["*"], [])


def test_wrong_arity_says_where_to_move():
    with pytest.raises(ValueError, match="move it to `unary_operators`"):
        sr.make_operator_set(["cos"], [])
    with pytest.raises(ValueError, match="move it to `binary_operators`"):
        sr.make_operator_set([], ["+"])


def test_julia_string_operator_is_refused_with_advice():
    with pytest.raises(ValueError, match="Python/JAX callables"):
        sr.make_operator_set(["+"], ["inv(x) = 1/x"])


def test_custom_operator():
    def cubic(x):
        return x * x * x + 1

    ops = sr.make_operator_set(["+"], [cubic], extra_sympy_mappings={"cubic": lambda x: x**3 + 1})
    op = ops.operator(ops.opcode("cubic"))
    np.testing.assert_allclose(op.numpy_fn(np.array([2.0])), [9.0])
    x = sympy.Symbol("x")
    assert op.sympy_fn(x) == x**3 + 1


def test_custom_operator_errors():
    def myop(x):
        return x

    with pytest.raises(ValueError, match="extra_sympy_mappings"):
        sr.make_operator_set([], [myop])
    with pytest.raises(ValueError, match="needs a name"):
        sr.make_operator_set([], [lambda x: x], extra_sympy_mappings={})

    def cos(x):
        return x

    with pytest.raises(ValueError, match="shadows"):
        sr.make_operator_set([], [cos], extra_sympy_mappings={"cos": sympy.cos})
    with pytest.raises(ValueError, match="more than once"):
        sr.make_operator_set(["+", "add"], [])
    with pytest.raises(TypeError, match="lists of names"):
        sr.make_operator_set("+", [])


def test_operator_set_is_hashable_and_static():
    a = sr.make_operator_set(["+"], ["cos"])
    b = sr.make_operator_set(["+"], ["cos"])
    assert hash(a) == hash(b) and a == b
    assert a.opcode("+") == 3 and a.opcode("cos") == 4
    with pytest.raises(ValueError, match="not in this operator set"):
        a.opcode("sin")

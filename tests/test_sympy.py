"""Trees to SymPy and back, lambdify against the NumPy reference, LaTeX, error paths.

SymPy reassociates sums and products and folds constants, so values agree only up to
rounding amplified by the expression's conditioning. Rows are compared where the
reference is finite and well-conditioned: perturbing the data, the constants and
every intermediate by a relative 1e-12 moves the value by at most a relative 1e-8
(this also drops rows that sit on a jump of floor/round/sign/mod, and rows whose
value is a cancellation). There the tolerance is a relative 1e-6.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import sympy
from _roundtrip import (
    N_FEATURES,
    all_operators,
    magnitude_floats,
    np_softclip,
    random_trees,
    set_constants,
)
from hypothesis import given
from hypothesis import strategies as st
from sympy.printing.numpy import NumPyPrinter

from symjax_sr._numpy_eval import evaluate_tree_numpy
from symjax_sr._operators import OperatorSet, make_operator_set
from symjax_sr._strings import parse_expression, tree_to_string
from symjax_sr._sympy import sympy_to_tree, tree_to_latex, tree_to_sympy
from symjax_sr._tree import Tree

_vec = np.frompyfunc
LAMBDIFY_MODULES = [
    {
        "erf": lambda x: _vec(math.erf, 1, 1)(x).astype(float),
        "erfc": lambda x: _vec(math.erfc, 1, 1)(x).astype(float),
        "gamma": all_operators().operator(all_operators().opcode("gamma")).numpy_fn,
        "softclip": np_softclip,
        "log1p_": np.log1p,
    },
    "numpy",
]
SYMBOLS = sympy.symbols(f"x0:{N_FEATURES}")


def _data(seed: int, n: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-3.0, 3.0, size=(n, N_FEATURES))


def _noisy(ops: OperatorSet, rng, eps: float) -> OperatorSet:
    """The same operators with every NumPy result perturbed by a relative `eps`."""

    def wrap(fn):
        def noisy(*args):
            out = np.asarray(fn(*args), dtype=np.float64)
            return out * (1 + eps * rng.uniform(-1, 1, out.shape))

        return noisy

    return OperatorSet(tuple(dataclasses.replace(o, numpy_fn=wrap(o.numpy_fn)) for o in ops.operators))


def _well_conditioned(tree: Tree, X, ops) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference `(pred, mask)`: mask marks rows that are finite and stable.

    Stable: perturbing the data, the constants and every intermediate result by a
    relative 1e-12 (far above the rounding differences of a reassociated form, far
    below the test tolerance) moves the value by at most a relative 1e-8. Rows whose
    value comes from cancellation (`x*1e30 - x*1e30 + y`) are not stable, rightly:
    SymPy cancels exactly where float64 cannot.
    """
    pred, ok, _ = evaluate_tree_numpy(tree, X, ops)
    rng = np.random.default_rng(0)
    stable = ok.copy()
    eps = 1e-12
    for _ in range(4):
        Xp = X * (1 + eps * rng.uniform(-1, 1, X.shape))
        c = tree.constants
        tp = tree.with_constants(c * (1 + eps * rng.uniform(-1, 1, c.shape)))
        p, okp, _ = evaluate_tree_numpy(tp, Xp, _noisy(ops, rng, eps))
        with np.errstate(invalid="ignore"):
            stable &= okp & (np.abs(p - pred) <= 1e-8 * np.abs(pred))
    return pred, stable


def _close(a, b) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(a - b) <= 1e-6 * np.maximum(np.abs(a), np.abs(b))


class _ExactPrinter(NumPyPrinter):
    """NumPy printer that writes floats in full (the default keeps 15 digits)."""

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_special(self, expr):
        # The functions of `LAMBDIFY_MODULES`, rather than the `math` scalar ones.
        return f"{type(expr).__name__}({self._print(expr.args[0])})"

    _print_erf = _print_erfc = _print_gamma = _print_special

    def _print_ComplexInfinity(self, expr):
        # SymPy's `zoo` (from `0**-y`) has no NumPy spelling; IEEE gives +inf.
        return "float('inf')"


# The settings lambdify gives its own printer.
_PRINTER = _ExactPrinter(
    {"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True}
)


def _is_log1p(e) -> bool:
    return isinstance(e, sympy.log) and isinstance(e.args[0], sympy.Add) and (
        sympy.S.One in e.args[0].args
    )


def _lambdify(expr):
    # `log1p`'s SymPy form `log(x + 1)` loses digits near x = 0 in float64; evaluate it
    # with `numpy.log1p`, as the reference does.
    expr = expr.replace(_is_log1p, lambda e: sympy.Function("log1p_")(e.args[0] - 1))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        f = sympy.lambdify(SYMBOLS, expr, modules=LAMBDIFY_MODULES, printer=_PRINTER)
    return f


def _call(f, X):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        out = f(*X.T)
        return np.broadcast_to(np.asarray(out, dtype=complex), X.shape[:1])


def _has_unrepresentable_number(expr) -> bool:
    """A number beyond 1e+-300, near where float64 arithmetic underflows or overflows."""
    for sub in sympy.preorder_traversal(expr):
        if sub.is_number and sub.is_finite is not False:
            v = complex(sub.evalf())
            if v != 0 and not 1e-300 < abs(v) < 1e300:
                return True
    return False


@given(
    seed=st.integers(0, 2**31 - 1),
    consts=st.lists(magnitude_floats(64), min_size=1, max_size=5),
)
def test_lambdify_agrees_with_reference(seed, consts):
    ops = all_operators()
    X = _data(seed)
    for tree in random_trees(seed):
        tree = set_constants(tree, consts, np.float64)
        ref, mask = _well_conditioned(tree, X, ops)
        if not mask.any():
            continue
        expr = tree_to_sympy(tree, ops)
        got = _call(_lambdify(expr), X)
        # Finite wherever the reference is, unless SymPy's algebra made a number that
        # float64 arithmetic cannot carry (`Mod(x, 1e-308)` -> `1e-308*Mod(9e307*x, 1)`).
        finite = np.isfinite(got)
        if not finite[mask].all():
            assert _has_unrepresentable_number(expr), (tree_to_string(tree, ops), expr)
            mask = mask & finite
        assert np.all(np.abs(got.imag[mask]) <= 1e-9 * np.abs(got.real[mask])), expr
        good = _close(got.real[mask], ref[mask])
        assert good.all(), (tree_to_string(tree, ops), expr, got[mask][~good], ref[mask][~good])


@given(
    seed=st.integers(0, 2**31 - 1),
    consts=st.lists(magnitude_floats(64), min_size=1, max_size=5),
)
def test_tree_sympy_tree_equivalent(seed, consts):
    ops = all_operators()
    X = _data(seed + 1)
    for tree in random_trees(seed):
        tree = set_constants(tree, consts, np.float64)
        ref, mask = _well_conditioned(tree, X, ops)
        expr = tree_to_sympy(tree, ops)
        if expr.has(sympy.nan, sympy.zoo, sympy.oo, sympy.I):
            continue  # a constant subtree is non-finite: the tree is never finite.
        back = sympy_to_tree(expr, ops)
        back.validate(ops)
        pred, ok, _ = evaluate_tree_numpy(back, X, ops)
        m = mask & ok
        good = _close(pred[m], ref[m])
        assert good.all(), (tree_to_string(tree, ops), expr, tree_to_string(back, ops))
        # Where the original is finite and stable, the mapped tree is finite too, unless
        # SymPy's algebra made a number float64 cannot hold (`log(2)**1e16`).
        if not ok[mask].all():
            assert _has_unrepresentable_number(expr), (
                tree_to_string(tree, ops), expr, tree_to_string(back, ops))
        # And the SymPy form of the mapped tree is the same expression: equal after
        # expansion, or numerically equal where there is anything to compare.
        again = tree_to_sympy(back, ops)
        if m.any() and sympy.expand(again - expr) != 0:
            f, g = _call(_lambdify(again), X), _call(_lambdify(expr), X)
            assert _close(f[m].real, g[m].real).all(), (expr, again)


def test_sympy_to_tree_canonical_forms():
    ops = make_operator_set(
        ["+", "-", "*", "/", "max"], ["square", "cube", "sqrt", "relu", "log2", "log10", "log1p", "neg", "inv", "cos", "exp"]
    )
    x0, x1 = sympy.symbols("x0 x1")
    cases = {
        x0 + x1 + 2: "((x0 + x1) + 2.0)",
        x0 - 3 * x1: "(x0 - (3.0 * x1))",
        -x0 + x1: "(x1 - x0)",
        -x0 - x1: "(neg(x0) - x1)",
        x0**2: "square(x0)",
        x0**3: "cube(x0)",
        sympy.sqrt(x0): "sqrt(x0)",
        x0 ** sympy.Rational(3, 2): "cube(sqrt(x0))",
        x0**4: "square(square(x0))",
        x0**5: "(square(square(x0)) * x0)",
        1 / x0: "inv(x0)",
        x0 / x1**2: "(x0 / square(x1))",
        2 / x0: "(2.0 / x0)",
        sympy.Max(0, x0): "relu(x0)",
        sympy.Max(x0, x1): "max(x0, x1)",
        sympy.log(x0, 2): "log2(x0)",
        3 * sympy.log(x0) / sympy.log(10): "(3.0 * log10(x0))",
        sympy.log(x0 + 1): "log1p(x0)",
        sympy.pi * x0: "(3.141592653589793 * x0)",
        sympy.Rational(1, 4) * sympy.cos(x0): "(0.25 * cos(x0))",
        sympy.E**x0: "exp(x0)",
        -sympy.cos(x0): "neg(cos(x0))",
    }
    for expr, expected in cases.items():
        assert tree_to_string(sympy_to_tree(expr, ops), ops) == expected, expr


def test_sympy_to_tree_fallbacks():
    """Forms the set lacks are rewritten with what it has."""
    x0, x1 = sympy.symbols("x0 x1")
    mul_add = make_operator_set(["+", "*"], [])
    assert tree_to_string(sympy_to_tree(x0**3, mul_add), mul_add) == "((x0 * x0) * x0)"
    assert tree_to_string(sympy_to_tree(x0 - x1, mul_add), mul_add) == "(x0 + (-1.0 * x1))"
    powers = make_operator_set(["*", "^"], [])
    assert tree_to_string(sympy_to_tree(1 / x0, powers), powers) == "(x0 ^ -1.0)"
    assert tree_to_string(sympy_to_tree(sympy.sqrt(x0), powers), powers) == "(x0 ^ 0.5)"
    divide = make_operator_set(["*", "/"], [])
    assert tree_to_string(sympy_to_tree(1 / x0, divide), divide) == "(1.0 / x0)"
    inv = make_operator_set(["*"], ["inv"])
    assert tree_to_string(sympy_to_tree(x0 / x1, inv), inv) == "(x0 * inv(x1))"
    named = sympy_to_tree(sympy.Symbol("b") * 2, divide, variable_names=["a", "b"])
    assert tree_to_string(named, divide, ["a", "b"]) == "(2.0 * b)"
    assert sympy_to_tree(sympy.Rational(1, 3) * x0, divide, dtype=np.float32).value.dtype == np.float32


@pytest.mark.parametrize(
    "expr, match",
    [
        ("cos(x0)", r"cannot express `cos\(x0\)`: add 'cos' to `unary_operators`"),
        ("1/x0", r"add '\^' to `binary_operators` or '/' to `binary_operators` or 'inv' to `unary_operators`"),
        ("sqrt(x0)", r"add '\^' .* or 'sqrt' to `unary_operators`"),
        ("x0**x1", r"add '\^' to `binary_operators`"),
        ("Max(x0, x1)", r"add 'max' to `binary_operators`"),
        ("x0 - x1*I", r"complex constant"),
        ("y + x0", r"Unknown symbol 'y'"),
        ("myfn(x0)", r"No operator maps to the SymPy construct `myfn`"),
        ("Heaviside(x0)", r"`Heaviside`"),
    ],
)
def test_sympy_to_tree_errors(expr, match):
    ops = make_operator_set(["+", "-", "*"], [])
    with pytest.raises(ValueError, match=match):
        sympy_to_tree(sympy.sympify(expr), ops)


def test_tree_to_sympy_details():
    ops = make_operator_set(["+", "*", "/"], ["sqrt", "cos"])
    tree = parse_expression("x0 * 2.5 + cos(x1) / 1.5", ops)
    expr, consts = tree_to_sympy(tree, ops, constants_as_symbols=True)
    c0, c1 = sympy.symbols("c0 c1")
    assert consts == {c0: 2.5, c1: 1.5}
    assert sympy.simplify(expr - (c0 * sympy.Symbol("x0") + sympy.cos(sympy.Symbol("x1")) / c1)) == 0
    # Symbols are plain, as PySR's, and constant names avoid variable names.
    named, consts = tree_to_sympy(tree, ops, ["c0", "c1"], constants_as_symbols=True)
    assert {s.name for s in consts} == {"c_0", "c_1"}
    assert sympy.Symbol("c0") in named.free_symbols
    assert tree_to_sympy(tree, ops).free_symbols == set(sympy.symbols("x0 x1"))
    # Constant subtrees fold with the reference semantics: nan, not complex or an error.
    assert tree_to_sympy(parse_expression("sqrt(-2.0) + x0", ops), ops).has(sympy.nan)
    assert tree_to_sympy(parse_expression("x0 * (1.0 / 0.0)", ops), ops) == sympy.oo * sympy.Symbol("x0")


# ---------------------------------------------------------------------------------
# LaTeX

LATEX_OPS = make_operator_set(
    ["+", "-", "*", "/", "^", "mod", "max"], ["neg", "square", "exp", "cos", "sqrt", "abs", "inv", "log2"]
)


@pytest.mark.parametrize(
    "string, expected",
    [
        ("(x0 + x1) * x2", r"\left(x_{0} + x_{1}\right) \cdot x_{2}"),
        ("x0 * (x1 + x2)", r"x_{0} \cdot \left(x_{1} + x_{2}\right)"),
        ("x0 - (x1 - x2)", r"x_{0} - \left(x_{1} - x_{2}\right)"),
        ("(x0 - x1) - x2", r"x_{0} - x_{1} - x_{2}"),
        ("x0 * (x1 * x2)", r"x_{0} \cdot \left(x_{1} \cdot x_{2}\right)"),
        ("(x0 + x1) ^ x2", r"\left(x_{0} + x_{1}\right)^{x_{2}}"),
        ("x0 ^ (x1 + x2)", r"x_{0}^{x_{1} + x_{2}}"),
        ("square(x0 + 1)", r"\left(x_{0} + 1.0\right)^{2}"),
        ("square(cos(x0))", r"\left(\cos{\left(x_{0} \right)}\right)^{2}"),
        ("neg(x0 + x1)", r"-\left(x_{0} + x_{1}\right)"),
        ("neg(x0 * x1)", r"-x_{0} \cdot x_{1}"),
        ("neg(neg(x0))", r"-\left(-x_{0}\right)"),
        ("x0 + neg(x1)", r"x_{0} + \left(-x_{1}\right)"),
        ("x0 * -2.5", r"x_{0} \cdot \left(-2.5\right)"),
        ("-2.5 * x0", r"-2.5 \cdot x_{0}"),
        ("(-2.5) ^ x0", r"\left(-2.5\right)^{x_{0}}"),
        ("(x0 + 1) / (x1 - 2)", r"\frac{x_{0} + 1.0}{x_{1} - 2.0}"),
        ("(x0 / x1) ^ 2", r"\left(\frac{x_{0}}{x_{1}}\right)^{2.0}"),
        ("exp(x0 + x1)", r"e^{x_{0} + x_{1}}"),
        ("sqrt(x0 * x1)", r"\sqrt{x_{0} \cdot x_{1}}"),
        ("abs(x0 - 1)", r"\left|{x_{0} - 1.0}\right|"),
        ("mod(x0 + 1, x1 * 2)", r"\left(x_{0} + 1.0\right) \bmod \left(x_{1} \cdot 2.0\right)"),
        ("max(x0 + 1, x1)", r"\max{\left(x_{0} + 1.0, x_{1} \right)}"),
        ("log2(x0) * 0.000123456", r"\log_{2}{\left(x_{0} \right)} \cdot \left(0.000123\right)"[:0]
         + r"\log_{2}{\left(x_{0} \right)} \cdot 0.000123"),
        ("x0 * 1.5e-7", r"x_{0} \cdot \left(1.5 \cdot 10^{-7}\right)"),
        ("1.5e-7 ^ x0", r"\left(1.5 \cdot 10^{-7}\right)^{x_{0}}"),
        ("x0 + Inf", r"x_{0} + \infty"),
        ("inv(x0 + 1)", r"\frac{1}{x_{0} + 1.0}"),
    ],
)
def test_latex(string, expected):
    assert tree_to_latex(parse_expression(string, LATEX_OPS), LATEX_OPS) == expected


def test_latex_names_and_precision():
    tree = parse_expression("alpha * 3.14159 + x_val", LATEX_OPS, variable_names=["alpha", "x_val", "y"])
    assert tree_to_latex(tree, LATEX_OPS, ["alpha", "x_val", "y"], precision=2) == (
        r"\mathrm{alpha} \cdot 3.1 + x_{\mathrm{val}}"
    )


@given(seed=st.integers(0, 2**31 - 1), consts=st.lists(magnitude_floats(64), min_size=1, max_size=5))
def test_latex_well_formed(seed, consts):
    """Every operator prints; braces and `\\left`/`\\right` balance; every variable shows."""
    ops = all_operators()
    for tree in random_trees(seed):
        tree = set_constants(tree, consts, np.float64)
        tex = tree_to_latex(tree, ops)
        assert tex.count("{") == tex.count("}"), tex
        assert tex.count(r"\left") == tex.count(r"\right"), tex
        depth = 0
        for ch in tex:
            depth += {"{": 1, "}": -1}.get(ch, 0)
            assert depth >= 0, tex
        for i in set(tree.arg[tree.op == 1].tolist()):
            assert f"x_{{{i}}}" in tex

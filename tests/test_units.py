"""Dimensional analysis (`_units.py`): unit parsing, the jitted check against a separate
stack-based checker, and a search that the units steer."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import sympy
from _strategies import trees
from hypothesis import given, settings
from hypothesis import strategies as st

from symjax_sr import PySRRegressor, make_operator_set, parse_expression
from symjax_sr._operators import CONST, FIRST_OP, VAR
from symjax_sr._tree import stack_trees
from symjax_sr._units import BASE_DIMENSIONS, dimension_violations, parse_unit

OPS = make_operator_set(["+", "-", "*", "/", "^", "max"],
                        ["sin", "exp", "sqrt", "square", "cube", "inv", "neg", "abs", "sign"])
UNITS = ["m", "s", "kg", "m/s", "1", "m^2", "s^-1"]


def dims(unit: str) -> np.ndarray:
    return parse_unit(unit).astype(np.float32)  # float32 arithmetic, as the jitted check


def test_parse_unit_si():
    L, M, T = (BASE_DIMENSIONS.index(n) for n in ("length", "mass", "time"))
    v = np.zeros(7, np.float32)
    v[L], v[T] = 1, -1
    np.testing.assert_array_equal(parse_unit("m/s"), v)
    np.testing.assert_array_equal(parse_unit("kg*m^2/s^2"), parse_unit("J"))
    np.testing.assert_array_equal(parse_unit("N"), parse_unit("kg*m*s**-2"))
    np.testing.assert_array_equal(parse_unit("km/ms"), v)  # prefixes change scale, not dimension
    np.testing.assert_array_equal(parse_unit("1"), np.zeros(7, np.float32))
    np.testing.assert_array_equal(parse_unit(""), np.zeros(7, np.float32))
    np.testing.assert_array_equal(parse_unit("rad"), np.zeros(7, np.float32))
    assert parse_unit("m^0.5")[L] == 0.5
    assert parse_unit("V")[M] == 1


def test_parse_unit_errors():
    with pytest.raises(ValueError, match="Unknown unit.*blorp"):
        parse_unit("blorp/s")
    with pytest.raises(ValueError, match="Cannot parse"):
        parse_unit("m s")
    with pytest.raises(ValueError, match="product of powers"):
        parse_unit("m + s")
    with pytest.raises(ValueError, match="product of powers"):
        parse_unit("sin(m)")
    with pytest.raises(TypeError, match="string"):
        parse_unit(["m"])


# --------------------------------------------------------------- a separate reference


def _reference(tree, x_units, y_unit, wild_constants=True):
    """The wildcard rules, evaluated bottom-up on a stack (not `_units.py`'s scan):
    returns True when the tree violates the units."""
    stack = []
    bad = False
    zero = lambda d: bool(np.all(np.abs(d) < 1e-4))  # noqa: E731
    for op, arg, val in zip(tree.op, tree.arg, tree.value, strict=True):
        if op == VAR:
            stack.append((dims(x_units[arg]), False, None))
            continue
        if op == CONST:
            stack.append((np.zeros(7, np.float32), wild_constants, np.float32(val)))
            continue
        o = OPS.operator(int(op))
        if o.arity == 1:
            d, w, _ = stack.pop()
            ok = w or zero(d)
            scale = {"sqrt": 0.5, "square": 2.0, "cube": 3.0, "inv": -1.0, "neg": 1.0, "abs": 1.0}
            if o.name in scale:
                stack.append((d * np.float32(scale[o.name]), w, None))
            elif o.name == "sign":
                stack.append((np.zeros(7, np.float32), False, None))
            else:
                bad |= not ok
                stack.append((np.zeros(7, np.float32), False, None))
            continue
        (rd, rw, rc), (ld, lw, _) = stack.pop(), stack.pop()
        if o.name in ("+", "-", "max"):
            if not lw and not rw and not zero(ld - rd):
                bad = True
            stack.append((rd if lw else ld, lw and rw, None))
        elif o.name == "*":
            stack.append((ld + rd, lw or rw, None))
        elif o.name == "/":
            stack.append((ld - rd, lw or rw, None))
        else:  # ^
            bad |= not (rw or zero(rd))
            if lw or zero(ld):
                stack.append((np.zeros(7, np.float32), lw, None))
            elif rc is not None:
                stack.append((ld * rc, False, None))
            else:
                bad = True
                stack.append((np.zeros(7, np.float32), False, None))
    (d, w, _), = stack
    if y_unit is not None and not (w or zero(d - dims(y_unit))):
        bad = True
    return bad


_JITTED = jax.jit(dimension_violations, static_argnums=(5, 6))


def _check(tree_list, x_units, y_unit, wild_constants=True):
    n = len(tree_list)
    pop = stack_trees(tree_list + tree_list[:1] * (6 - n), 24, 12)  # one shape: one compile
    x = np.zeros((3, 7), np.float32)
    x[: len(x_units)] = np.stack([dims(u) for u in x_units])
    y = None if y_unit is None else dims(y_unit)
    return np.asarray(_JITTED(pop.op, pop.arg, pop.const, x, y, OPS, not wild_constants))[:n]


@pytest.mark.parametrize("expr, x_units, y_unit, wild, violates", [
    ("x0 + x1", ["m", "s"], None, True, True),
    ("x0 + x1", ["m", "m"], "m", True, False),
    ("x0 * x1", ["m", "s"], "m*s", True, False),
    ("x0 * x1", ["m", "s"], "m", True, True),
    ("x0 / x1", ["m", "s"], "m/s", True, False),
    ("sin(x0)", ["m", "s"], None, True, True),
    ("sin(2.0 * x0)", ["m", "s"], None, True, False),  # the constant takes 1/m
    ("sin(2.0 * x0)", ["m", "s"], None, False, True),  # dimensionless constants only
    ("x0 + 1.5", ["m", "s"], "m", True, False),
    ("x0 + 1.5", ["m", "s"], "m", False, True),
    ("x0 ^ 2.0", ["m", "s"], "m^2", True, False),
    ("square(x0) / x1", ["m", "s"], "m^2/s", True, False),
    ("sqrt(x0)", ["m^2", "s"], "m", True, False),
    ("x0 ^ x1", ["m", "1"], None, True, True),  # a computed power of a dimensional base
    ("x1 ^ x0", ["m", "1"], None, True, True),  # a dimensional exponent
    ("exp(x0 / x1)", ["m", "m"], "1", True, False),
    ("sign(x0) * x1", ["m", "s"], "s", True, False),
    ("neg(inv(x1))", ["m", "s"], "s^-1", True, False),
    ("max(x0, x1)", ["m", "s"], None, True, True),
])
def test_named_cases(expr, x_units, y_unit, wild, violates):
    tree = parse_expression(expr, OPS)
    assert _reference(tree, x_units, y_unit, wild) == violates
    assert bool(_check([tree], x_units, y_unit, wild)[0]) == violates


@settings(max_examples=200, deadline=None)
@given(st.lists(trees(OPS, n_features=3, max_leaves=6), min_size=1, max_size=6),
       st.lists(st.sampled_from(UNITS), min_size=3, max_size=3),
       st.one_of(st.none(), st.sampled_from(UNITS)), st.booleans())
def test_check_matches_reference(tree_list, x_units, y_unit, wild):
    tree_list = [t for t in tree_list if t.size <= 24 and (t.op == CONST).sum() <= 12]
    if not tree_list:
        return
    got = _check(tree_list, x_units, y_unit, wild)
    want = [_reference(t, x_units, y_unit, wild) for t in tree_list]
    assert got.tolist() == want


def test_rules_cover_the_operator_set():
    # every opcode of the set is given a rule: a tree of each operator over dimensionless
    # features never violates
    for i, o in enumerate(OPS.operators):
        text = f"{o.name}(x0)" if o.arity == 1 else f"x0 {o.infix} x1" if o.infix else f"{o.name}(x0, x1)"
        tree = parse_expression(text, OPS)
        assert tree.op[-1] == FIRST_OP + i
        assert not _check([tree], ["1", "1"], "1")[0], o.name


# --------------------------------------------------------------------------- the search


def _consistent(expr: sympy.Expr, units: dict, y_unit) -> bool:
    """SymPy's own dimension analysis of a rational formula (numbers dimensionless)."""
    from sympy.physics import units as u
    from sympy.physics.units.systems.si import SI, dimsys_SI

    with_units = expr.subs({s: getattr(u, units[str(s)]) for s in expr.free_symbols})
    try:
        _, d = SI._collect_factor_and_dimension(with_units)
    except ValueError:  # SymPy refuses e.g. the sum of a length and a time
        return False
    return dimsys_SI.equivalent_dims(d, SI.get_quantity_dimension(getattr(u, y_unit)))


def test_units_steer_the_search():
    """y = x0*x1 exactly, but the units say y is a length and constants are pure
    numbers: x0*x1 (a length times a time) is penalised, and every formula the search
    reports below the penalty is a length."""
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 3, (64, 2))
    y = X[:, 0] * X[:, 1]
    model = PySRRegressor(binary_operators=["+", "*", "/"], unary_operators=[], niterations=8,
                          populations=4, population_size=20, ncycles_per_iteration=30, maxsize=9,
                          random_state=0, verbosity=0, progress=False, temp_equation_file=True,
                          dimensionless_constants_only=True)
    model.fit(X, y, variable_names=["a", "b"], X_units=["m", "s"], y_units="m")
    eqs = model.equations_
    units = {"a": "m", "b": "s"}
    assert model.X_units_ == ["m", "s"] and model.y_units_ == "m"
    below = eqs[eqs["loss"] < 1000.0]
    assert len(below) >= 1
    for expr in below["sympy_format"]:
        assert _consistent(expr, units, "m"), expr
    best = model.sympy()
    assert _consistent(best, units, "m") and sympy.simplify(best - sympy.Symbol("a") * sympy.Symbol("b")) != 0
    # the same penalty, as a parameter, and errors that say what to do
    with pytest.raises(ValueError, match="one unit per feature"):
        model.fit(X, y, X_units=["m"])
    with pytest.raises(ValueError, match="one per output"):
        model.fit(X, y, X_units=["m", "s"], y_units=["m", "s"])
    with pytest.raises(ValueError, match="dimensional_constraint_penalty"):
        PySRRegressor(dimensional_constraint_penalty=-1.0, niterations=1).fit(X, y, X_units=["m", "s"])

"""Dimensional analysis: PySR's `X_units` / `y_units`, checked inside the jitted search.

Unit strings (`"m/s"`, `"kg*m^2/s^2"`, `"N"`, `"1"`) are parsed with SymPy's own unit
system (`sympy.physics.units`, SI): SymPy is a core dependency already, so units need
no extra install, and every SI unit and prefix PySR users write is there. A unit
becomes its exponents over the seven SI base dimensions; scale factors are ignored
(only dimensions are checked, as PySR's dimensional regularisation does).

The check follows SymbolicRegression.jl's wildcard rules. A constant is a *wildcard*
(it may carry whatever unit makes the formula consistent) unless
`dimensionless_constants_only`; `+ - max min mod` need equal dimensions (a wildcard
side takes the other's); `*` and `/` add and subtract them (wildcard if either side
is); `sqrt square cube inv` scale them; `neg abs relu round floor ceil` keep them;
`x ^ p` needs a dimensionless exponent, and a dimensional base only with a constant
exponent (SymbolicRegression.jl reads the exponent off a data row; a fixed-shape
check cannot, so a dimensional base to a computed power counts as a violation);
`sign` takes any argument to a dimensionless result; every other operator (the
transcendental ones, and custom operators) needs dimensionless arguments. The root
must have `y_units` when they are given. A violating candidate's loss gets
`dimensional_constraint_penalty` added (PySR's default 1000).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._operators import CONST, FIRST_OP, PAD, VAR, OperatorSet
from ._tree import structure

__all__ = ["BASE_DIMENSIONS", "parse_unit", "feature_dims", "dimension_violations"]

#: SI base dimensions, in the order of a dimension vector.
BASE_DIMENSIONS = ("length", "mass", "time", "current", "temperature", "amount_of_substance",
                   "luminous_intensity")
_D = len(BASE_DIMENSIONS)
_TOL = 1e-4  # exponents are sums of small rationals (1/2, 1/3, ...)

# Operator rules, by PySR name. Kinds of a node:
_LEAF, _UNARY_SCALE, _UNARY_TO_DIMLESS, _UNARY_DIMLESS, _SAME, _LINEAR, _POW, _BINARY_DIMLESS = range(8)
_SCALE = {"sqrt": 0.5, "square": 2.0, "cube": 3.0, "inv": -1.0, "neg": 1.0, "abs": 1.0,
          "relu": 1.0, "round": 1.0, "floor": 1.0, "ceil": 1.0}
_SAME_OPS = frozenset({"+", "-", "max", "min", "mod"})
_LINEAR_OPS = {"*": 1.0, "/": -1.0}
_DIMENSIONLESS_UNITS = ("radian", "rad", "degree", "deg", "percent", "steradian", "sr")


@functools.cache
def _namespace() -> dict:
    from sympy.physics import units

    return {k: getattr(units, k) for k in dir(units) if not k.startswith("_")}


def parse_unit(text: str | float | int) -> np.ndarray:
    """The SI dimension vector `[7]` of a unit string (PySR's syntax: `"m/s^2"`, `"kg*m^2"`);
    `"1"` (or `""`, or the number 1) is dimensionless."""
    import sympy
    from sympy.physics.units import Quantity
    from sympy.physics.units.systems.si import SI, dimsys_SI

    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        raise TypeError(f"A unit must be a string such as 'm/s' or '1', got {text!r}.")
    if not text.strip():
        return np.zeros(_D)
    ns = _namespace()
    try:
        expr = sympy.sympify(text.replace("^", "**"), locals=ns)
    except (sympy.SympifyError, SyntaxError, TypeError) as e:
        raise ValueError(f"Cannot parse the unit {text!r}; write units with * / ^, e.g. "
                         "'kg*m^2/s^2' or 'm*s^-1'.") from e
    if expr.atoms(sympy.Add) or expr.atoms(sympy.Function):
        raise ValueError(f"The unit {text!r} is not a product of powers of units; write it like "
                         "'kg*m^2/s^2'.")
    unknown = sorted(str(s) for s in expr.free_symbols)
    if unknown:
        raise ValueError(f"Unknown unit(s) {unknown} in {text!r}; use SI names and prefixes as "
                         "sympy.physics.units spells them (m, s, kg, N, J, W, Pa, V, K, mol, km, ms ...).")
    for q in expr.atoms(Quantity):
        if SI.get_quantity_dimension(q) == sympy.physics.units.Dimension(1) and \
                str(q.name) not in _DIMENSIONLESS_UNITS and q.abbrev.name not in _DIMENSIONLESS_UNITS:
            raise ValueError(f"The unit {str(q)!r} in {text!r} has no SI dimension in "
                             "sympy.physics.units; write it in SI units.")
    deps = dimsys_SI.get_dimensional_dependencies(SI.get_dimensional_expr(expr))
    out = np.zeros(_D)
    for dim, power in deps.items():
        out[BASE_DIMENSIONS.index(str(dim.name))] = float(power)
    return out


def feature_dims(X_units: Sequence | None, n_features: int) -> np.ndarray:
    """`X_units` (one unit per feature; None: every feature dimensionless) as `[F, 7]`."""
    if X_units is None:
        return np.zeros((n_features, _D))
    if isinstance(X_units, str) or len(X_units) != n_features:
        raise ValueError(f"`X_units` needs one unit per feature ({n_features}), got {X_units!r}.")
    return np.stack([parse_unit(u) for u in X_units])


def _rules(operators: OperatorSet) -> tuple[np.ndarray, np.ndarray]:
    """Per-opcode node kind and scale (the exponent factor or the sign of the right side)."""
    n = FIRST_OP + len(operators.operators)
    kind = np.full(n, _LEAF, np.int32)
    scale = np.zeros(n, np.float32)
    for i, o in enumerate(operators.operators):
        c = FIRST_OP + i
        if o.arity == 1:
            if o.name in _SCALE:
                kind[c], scale[c] = _UNARY_SCALE, _SCALE[o.name]
            else:
                kind[c] = _UNARY_TO_DIMLESS if o.name == "sign" else _UNARY_DIMLESS
        elif o.name in _SAME_OPS:
            kind[c] = _SAME
        elif o.name in _LINEAR_OPS:
            kind[c], scale[c] = _LINEAR, _LINEAR_OPS[o.name]
        else:
            kind[c] = _POW if o.name == "^" else _BINARY_DIMLESS
    return kind, scale


def _violates_one(op: Int[Array, " L"], arg: Int[Array, " L"], const: Float[Array, " K"],
                  x_dims: Float[Array, "F 7"], y_dims: Float[Array, " 7"] | None,
                  operators: OperatorSet, dimensionless_constants_only: bool) -> Bool[Array, ""]:
    kind_t, scale_t = (jnp.asarray(a) for a in _rules(operators))
    L = op.shape[0]
    _, start, _ = structure(op, operators.arity_table)
    kind, scale = kind_t[op], scale_t[op]
    is_const = op == CONST
    cval = jnp.where(is_const, const[jnp.clip(arg, 0, const.shape[0] - 1)], 0.0).astype(jnp.float32)
    leaf_dims = jnp.where((op == VAR)[:, None], x_dims[jnp.clip(arg, 0, x_dims.shape[0] - 1)], 0.0)
    leaf_wild = is_const & (not dimensionless_constants_only)

    def zero(d):
        return jnp.all(jnp.abs(d) < _TOL)

    def step(carry, i):
        dims, wild, bad = carry
        r = jnp.maximum(i - 1, 0)
        lft = jnp.maximum(start[r] - 1, 0)
        k = kind[i]
        a_d, a_w = jnp.where(k >= _SAME, dims[lft], dims[r]), jnp.where(k >= _SAME, wild[lft], wild[r])
        b_d, b_w = dims[r], wild[r]
        a_ok = a_w | zero(a_d)
        b_ok = b_w | zero(b_d)
        z = jnp.zeros((_D,), jnp.float32)
        # (dims, wild, violation) of each kind; padding and leaves take the leaf tables
        same_d = jnp.where(a_w, b_d, a_d)
        same_bad = ~a_w & ~b_w & ~zero(a_d - b_d)
        pow_d = jnp.where(a_w | zero(a_d), z, a_d * cval[r])
        pow_bad = ~b_ok | (~a_ok & ~is_const[r])
        cases_d = jnp.stack([leaf_dims[i], a_d * scale[i], z, z, same_d, a_d + scale[i] * b_d, pow_d, z])
        cases_w = jnp.stack([leaf_wild[i], a_w, False, False, a_w & b_w, a_w | b_w, a_w, False])
        cases_bad = jnp.stack([False, False, False, ~a_ok, same_bad, False, pow_bad, ~a_ok | ~b_ok])
        real = op[i] != PAD
        return (dims.at[i].set(cases_d[k]), wild.at[i].set(cases_w[k]),
                bad | (real & cases_bad[k])), None

    init = (jnp.zeros((L, _D), jnp.float32), jnp.zeros((L,), bool), jnp.bool_(False))
    (dims, wild, bad), _ = jax.lax.scan(step, init, jnp.arange(L))
    if y_dims is not None:
        bad = bad | ~(wild[L - 1] | zero(dims[L - 1] - y_dims))
    return bad


def dimension_violations(
    op: Int[Array, "*batch L"], arg: Int[Array, "*batch L"], const: Float[Array, "*batch K"],
    x_dims: Float[Array, "F 7"], y_dims: Float[Array, " 7"] | None, operators: OperatorSet,
    dimensionless_constants_only: bool = False,
) -> Bool[Array, " *batch"]:
    """Whether each right-aligned tree violates the units (any leading shape)."""
    lead = op.shape[:-1]
    flat = [jnp.reshape(a, (-1, a.shape[-1])) for a in (op, arg, const)]
    x_dims = jnp.asarray(x_dims, jnp.float32)
    y_dims = None if y_dims is None else jnp.asarray(y_dims, jnp.float32)
    bad = jax.vmap(lambda o, a, c: _violates_one(o, a, c, x_dims, y_dims, operators,
                                                 dimensionless_constants_only))(*flat)
    return bad.reshape(lead)

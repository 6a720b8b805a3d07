"""EQL units: the primitive functions a layer applies after its linear map.

A unit is named. Unary units take one linear output, binary units (`product`,
`division`) take two. Besides the EQL-specific units below, every unary operator of
the registry (`symjax_sr.OPERATORS`: `square`, `cube`, `tanh`, `log`, ...) is a unit,
with its JAX function and SymPy mapping.

Numerical safety: every unit returns finite values with finite gradients for any
finite input. `exp` clips its argument at `exp_clip`; `division` is EQL÷'s
`a / b if b > θ else 0` (the double-`where` trick keeps the unselected branch's
gradient finite); other registry operators are evaluated on a safe input where
their value would be non-finite and return 0 there.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import sympy

from .._operators import _ALIASES, OPERATORS

__all__ = ["Unit", "get_unit", "unit_names", "EQL_UNITS", "BINARY_UNITS"]


@dataclasses.dataclass(frozen=True)
class Unit:
    """One EQL unit: name, arity, JAX function and SymPy function."""

    name: str
    arity: int
    jax_fn: Callable[..., Any] = dataclasses.field(compare=False, repr=False)
    sympy_fn: Callable[..., Any] = dataclasses.field(compare=False, repr=False)
    operators: tuple[str, ...] = ()  # registry operators its SymPy form needs


def _identity(x):
    return x


def _constant(x):
    return jnp.ones_like(x)


def _sigmoid_sympy(x):
    return 1 / (1 + sympy.exp(-x))


def _guarded(fn, safe: float):
    """`fn` with non-finite outputs replaced by 0 and finite gradients (double where)."""

    def apply(x):
        ok = jnp.isfinite(jax.lax.stop_gradient(fn(x)))
        return jnp.where(ok, fn(jnp.where(ok, x, safe)), 0.0)

    return apply


def _registry_unit(name: str) -> Unit:
    op = OPERATORS[name]
    needs = (name,)
    return Unit(name, 1, _guarded(op.jax_fn, op.safe_input), op.sympy_fn, needs)


#: Units specific to EQL (`exp` is special-cased for its clipping, see `apply_unary`).
EQL_UNITS: dict[str, Unit] = {
    "identity": Unit("identity", 1, _identity, _identity),
    "constant": Unit("constant", 1, _constant, lambda x: sympy.Integer(1)),
    "sigmoid": Unit("sigmoid", 1, jax.nn.sigmoid, _sigmoid_sympy, ("exp",)),
    "exp": Unit("exp", 1, jnp.exp, sympy.exp, ("exp",)),
    "sin": Unit("sin", 1, jnp.sin, sympy.sin, ("sin",)),
    "cos": Unit("cos", 1, jnp.cos, sympy.cos, ("cos",)),
    "square": Unit("square", 1, jnp.square, lambda x: x**2, ("square",)),
    "product": Unit("product", 2, jnp.multiply, lambda a, b: a * b),
    "division": Unit("division", 2, jnp.divide, lambda a, b: a / b, ("/",)),
}
BINARY_UNITS = ("product", "division")
_UNIT_ALIASES = {"id": "identity", "linear": "identity", "const": "constant", "mul": "product",
                 "mult": "product", "multiply": "product", "*": "product", "div": "division",
                 "divide": "division", "/": "division"}


def unit_names() -> list[str]:
    """Every valid unit name: the EQL units, then the registry's unary operators."""
    reg = [n for n, op in OPERATORS.items() if op.arity == 1 and n not in EQL_UNITS]
    return list(EQL_UNITS) + reg


def get_unit(name: str) -> Unit:
    """Look up a unit by name; `ValueError` naming the valid units otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"EQL unit names are strings, got {type(name).__name__}: {name!r}.")
    key = _UNIT_ALIASES.get(name.strip(), name.strip())
    key = _ALIASES.get(key, key)
    if key in EQL_UNITS:
        return EQL_UNITS[key]
    if key in OPERATORS and OPERATORS[key].arity == 1:
        return _registry_unit(key)
    valid = unit_names()
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown EQL unit {name!r}.{hint} Valid units: {', '.join(valid)}. Binary units "
        "are `product` and `division`; unary ones are the EQL units or any unary operator "
        "of `symjax_sr.OPERATORS`."
    )


def apply_unary(unit: Unit, z, exp_clip: float):
    """A unary unit on the vector `z`, guarded (see the module docstring)."""
    if unit.name == "exp":
        return jnp.exp(jnp.minimum(z, exp_clip))
    return unit.jax_fn(z)


def apply_division(a, b, threshold: float):
    """EQL÷ division `a / b` where `b > threshold`, else 0, and its penalty `Σ max(θ - b, 0)`."""
    ok = b > threshold
    out = jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0)
    return out, jnp.sum(jnp.maximum(threshold - b, 0.0))

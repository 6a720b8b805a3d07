"""Trained EQL network -> SymPy expressions.

`eql_to_sympy` reads the network symbolically, layer by layer, dropping every weight
and bias with `|w| < threshold` (gated layers use their deterministic gates). With
`threshold=0` the expression is the network's own function wherever no `exp` is
clipped and no denominator is at or below the division threshold.

`simplify_expression` then expands (when the expression is small enough for that to be
cheap) and rounds every float to `digits` decimals, so that terms below `10^-digits`
vanish and `1.0·x` prints as `x`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy

from .._strings import _check_names
from ._layers import EQL, EQLLayer
from ._units import get_unit

__all__ = ["eql_to_sympy", "simplify_expression", "round_floats"]


def _number(v: float, threshold: float):
    return sympy.Integer(0) if abs(v) < threshold or v == 0 else sympy.Float(float(v))


def _layer_sympy(layer: EQLLayer, h: list, threshold: float) -> list:
    W = np.asarray(layer.effective_weight(), dtype=np.float64)
    b = np.asarray(layer.bias, dtype=np.float64)
    z = []
    for j in range(W.shape[1]):
        terms = [_number(b[j], threshold)]
        terms += [_number(W[i, j], threshold) * h[i] for i in range(W.shape[0])
                  if abs(W[i, j]) >= threshold and W[i, j] != 0]
        z.append(sympy.Add(*terms))
    out, i = [], 0
    for name in layer.units:
        unit = get_unit(name)
        out.append(unit.sympy_fn(*z[i:i + unit.arity]))
        i += unit.arity
    return out


def eql_to_sympy(model: EQL | EQLLayer | Sequence[EQLLayer],
                 variable_names: Sequence[str] | None = None,
                 threshold: float = 0.0) -> list[sympy.Expr]:
    """The SymPy expression of each output of an EQL network (or stack of layers).

    **Arguments:**

    - `model`: an `EQL`, an `EQLLayer`, or a sequence of chained `EQLLayer`s.
    - `variable_names`: input symbol names; `x0, x1, ...` when None.
    - `threshold`: weights and biases with `|w| < threshold` are dropped.

    Returns one expression per output (unsimplified; see `simplify_expression`).

    ```python
    net = EQL(1, 1, hidden_layers=1, key=jax.random.key(0))
    (expr,) = eql_to_sympy(net, ["x"], threshold=0.01)
    ```
    """
    if isinstance(model, EQL):
        layers = list(model.layers)
    elif isinstance(model, EQLLayer):
        layers = [model]
    else:
        layers = list(model)
        if not layers or not all(isinstance(l, EQLLayer) for l in layers):
            raise TypeError(
                f"`eql_to_sympy` takes an `EQL`, an `EQLLayer` or a list of them, got "
                f"{type(model).__name__}."
            )
    if not threshold >= 0:
        raise ValueError(f"`threshold` must be >= 0, got {threshold!r}.")
    n_in = layers[0].in_features
    names = _check_names(variable_names) or tuple(f"x{i}" for i in range(n_in))
    if len(names) != n_in:
        raise ValueError(f"`variable_names` has {len(names)} names for {n_in} inputs.")
    h = [sympy.Symbol(n) for n in names]
    for layer in layers:
        h = _layer_sympy(layer, h, threshold)
    return h


def round_floats(expr: sympy.Expr, digits: int) -> sympy.Expr:
    """Round every float in `expr` to `digits` decimals; whole numbers become integers."""
    repl = {}
    for f in expr.atoms(sympy.Float):
        v = round(float(f), digits)
        repl[f] = sympy.Integer(int(v)) if v == int(v) else sympy.Float(v)
    return expr.xreplace(repl)


def simplify_expression(expr: sympy.Expr, digits: int = 3, max_ops: int = 300) -> sympy.Expr:
    """Expand (if at most `max_ops` operations) and round floats to `digits` decimals."""
    expr = round_floats(sympy.sympify(expr), digits + 3)
    if sympy.count_ops(expr) <= max_ops:
        expr = sympy.expand(expr)
    return round_floats(expr, digits)

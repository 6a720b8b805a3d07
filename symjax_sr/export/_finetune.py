"""Fine-tuning helpers for exported formulas: round the constants, swap into a model."""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._equinox import EquinoxExpression

__all__ = ["quantise_to", "swap_in"]


def _round_to(values: np.ndarray, step: float) -> np.ndarray:
    # In float64, then to the constants' dtype: the nearest value to the exact multiple.
    v = np.asarray(values, np.float64)
    return np.round(v / step) * step


def quantise_to(module, step: float):
    """Round every constant of the exported formulas in `module` to a multiple of `step`.

    **Arguments:**

    - `module`: an `EquinoxExpression` or `TorchExpression`, or any equinox pytree /
      torch module holding some; their other parameters are left alone.
    - `step`: the grid, e.g. `0.01`.

    **Returns:** a copy with the constants rounded (the input is not changed). Rounding
    happens on the host in float64, so each constant is the `dtype` value nearest to its
    multiple of `step`, and `.sympy()` prints it as that decimal.

    ```python
    f = quantise_to(to_equinox(sympy.sympify("2.4567*x0 + 0.0123")), 0.01)
    f.sympy()  # 2.46*x0 + 0.01
    ```
    """
    if isinstance(step, bool) or not isinstance(step, (int, float, np.floating)) or not (
        math.isfinite(step) and step > 0
    ):
        raise ValueError(f"`step` must be a positive finite number such as 0.01, got {step!r}.")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(module, torch.nn.Module):
        return _quantise_torch(module, float(step), torch)
    found = []

    def one(leaf):
        if not isinstance(leaf, EquinoxExpression):
            return leaf
        found.append(leaf)
        c = leaf.constants
        return eqx.tree_at(lambda m: m.constants, leaf, jnp.asarray(_round_to(c, step), c.dtype))

    out = jax.tree_util.tree_map(one, module, is_leaf=lambda x: isinstance(x, EquinoxExpression))
    if not found:
        raise ValueError(
            f"`quantise_to` found no exported formula in {type(module).__name__}: pass a "
            "module from `to_equinox`/`stack_equinox`/`to_torch`, or a model holding one."
        )
    return out


def _quantise_torch(module, step: float, torch):
    from ._torch_module import TorchExpression

    out = copy.deepcopy(module)
    formulas = [m for m in out.modules() if isinstance(m, TorchExpression)]
    if not formulas:
        raise ValueError(
            f"`quantise_to` found no exported formula in {type(module).__name__}: pass a "
            "module from `to_torch`, or a torch model holding one."
        )
    with torch.no_grad():
        for f in formulas:
            q = _round_to(f.constants.detach().cpu().numpy(), step)
            f.constants.copy_(torch.as_tensor(q, dtype=f.constants.dtype))
    return out


def swap_in(model, where: Callable, formula, *, example=None):
    """Put `formula` into a larger equinox `model` at `where` (via `eqx.tree_at`).

    **Arguments:**

    - `model`: an equinox pytree, e.g. a module with an MLP sub-module.
    - `where`: a function `model -> the node to replace`, as for `eqx.tree_at`.
    - `formula`: the replacement, typically an `EquinoxExpression` from `to_equinox`.
    - `example`: optional input of the replaced node; when given, the replacement must
      return the same shape and dtype on it as the node it replaces.

    **Returns:** the new model; the formula's constants train with the rest of it.

    ```python
    model = swap_in(model, lambda m: m.mlp, to_equinox(expr))
    ```
    """
    if not callable(where):
        raise TypeError(f"`where` must be a function such as `lambda m: m.mlp`, got {where!r}.")
    old = where(model)
    if example is not None:
        shape_old = eqx.filter_eval_shape(old, example)
        shape_new = eqx.filter_eval_shape(formula, example)
        if jax.tree_util.tree_structure(shape_old) != jax.tree_util.tree_structure(shape_new) or any(
            (a.shape, a.dtype) != (b.shape, b.dtype)
            for a, b in zip(jax.tree_util.tree_leaves(shape_old), jax.tree_util.tree_leaves(shape_new))
        ):
            raise ValueError(
                f"The formula returns {shape_new} on `example` but the node it replaces "
                f"returns {shape_old}; use `stack_equinox` for several outputs, or wrap the "
                "formula so that its output matches."
            )
    return eqx.tree_at(where, model, formula)

"""Sparsity regularisers over every `EQLLayer` inside any pytree.

Each maps a model (an `EQL`, or a bigger equinox model holding `EQLLayer`s anywhere) to
a scalar you add to any loss: `loss = mse + λ · l12_penalty(model)`. Only EQL layers
are regularised; other parameters of the model are left alone.

- `l1_penalty`: `Σ |w| + Σ |b|`.
- `l12_penalty`: Kim et al.'s smoothed L0.5, `Σ f(w)` with `f(w) = |w|^½` for
  `|w| ≥ a` and `(-w⁴/(8a³) + 3w²/(4a) + 3a/8)^½` below (finite gradient at 0).
- `l0_penalty`: relaxed L0 of hard-concrete gates (Louizos et al.), the expected
  number of open gates `Σ sigmoid(log α - β log(-γ/ζ))`; needs `gates=True` layers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from ._layers import GATE_LIMITS, EQLLayer

__all__ = ["eql_layers", "l1_penalty", "l12_penalty", "l0_penalty", "REGULARISERS"]


def eql_layers(model: PyTree) -> list[EQLLayer]:
    """Every `EQLLayer` inside `model`, in tree order."""
    nodes = jax.tree_util.tree_leaves(model, is_leaf=lambda n: isinstance(n, EQLLayer))
    return [n for n in nodes if isinstance(n, EQLLayer)]


def _check(model: PyTree, name: str) -> list[EQLLayer]:
    layers = eql_layers(model)
    if not layers:
        raise ValueError(
            f"`{name}` found no `EQLLayer` in the model ({type(model).__name__}); it "
            "regularises EQL layers only."
        )
    return layers


def l1_penalty(model: PyTree) -> Float[Array, ""]:
    """L1 norm of the weights and biases of every EQL layer."""
    return sum(jnp.sum(jnp.abs(l.weight)) + jnp.sum(jnp.abs(l.bias))
               for l in _check(model, "l1_penalty"))


def _smooth_sqrt_abs(w, a: float):
    small = jnp.abs(w) < a
    w_small = jnp.where(small, w, 0.0)
    inner = -(w_small**4) / (8 * a**3) + 3 * w_small**2 / (4 * a) + 3 * a / 8
    w_big = jnp.where(small, a, jnp.abs(w))
    return jnp.where(small, jnp.sqrt(inner), jnp.sqrt(w_big))


def l12_penalty(model: PyTree, a: float = 0.01) -> Float[Array, ""]:
    """Smoothed L0.5 (Kim et al.) of the weights and biases of every EQL layer.

    `a` is the half-width of the polynomial smoothing around 0.
    """
    if not a > 0:
        raise ValueError(f"`a` (smoothing width of l12_penalty) must be > 0, got {a!r}.")
    return sum(jnp.sum(_smooth_sqrt_abs(l.weight, a)) + jnp.sum(_smooth_sqrt_abs(l.bias, a))
               for l in _check(model, "l12_penalty"))


def l0_penalty(model: PyTree) -> Float[Array, ""]:
    """Expected number of open hard-concrete gates over every gated EQL layer."""
    gamma, zeta, beta = GATE_LIMITS
    shift = beta * math.log(-gamma / zeta)
    gated = [l for l in _check(model, "l0_penalty") if l.log_alpha is not None]
    if not gated:
        raise ValueError(
            "`l0_penalty` needs gated layers: build the EQL with `gates=True` (or use "
            "`l1_penalty` / `l12_penalty`)."
        )
    return sum(jnp.sum(jax.nn.sigmoid(l.log_alpha - shift)) for l in gated)


#: Regulariser by name, as `EQLRegressor(regulariser=...)` spells it.
REGULARISERS = {"l1": l1_penalty, "l12": l12_penalty, "l0": l0_penalty}

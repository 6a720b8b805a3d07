"""Full-batch training of an EQL network under an optax optimiser and a λ schedule.

`train` runs `steps` optimiser steps in jitted chunks of `lax.scan` and checks on the
host after every chunk that the loss and the parameters are finite; a non-finite value
stops the run with `diverged=True` (the caller restarts the trial, as the reference
EQL implementation does). Nothing here retraces across calls that reuse the same
optimiser, schedule and regulariser objects and the same shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

__all__ = ["TrainResult", "train", "data_loss"]


class TrainResult(NamedTuple):
    model: PyTree
    loss: float  # final mean squared error (no regularisation)
    diverged: bool
    steps: int


def _forward(model, x, key):
    if hasattr(model, "forward"):
        return model.forward(x, key=key)
    return model(x), jnp.zeros((), x.dtype)


def data_loss(model, X: Float[Array, "N F"], Y: Float[Array, "N O"]) -> Float[Array, ""]:
    """Mean squared error of `model` on a batch (deterministic gates)."""
    pred = jax.vmap(lambda x: _forward(model, x, None)[0])(X)
    return jnp.mean((pred - Y) ** 2)


@eqx.filter_jit
def _chunk(params, static, opt_state, step0, key, X, Y, optimizer, lam, regulariser, n: int):
    def loss_fn(p, step):
        model = eqx.combine(p, static)
        k = jax.random.fold_in(key, step)
        pred, pen = jax.vmap(lambda x: _forward(model, x, k))(X)
        mse = jnp.mean((pred - Y) ** 2)
        return mse + lam(step) * regulariser(model) + jnp.mean(pen), mse

    def body(carry, i):
        p, s = carry
        step = step0 + i
        (_, mse), g = jax.value_and_grad(loss_fn, has_aux=True)(p, step)
        updates, s = optimizer.update(g, s, p)
        return (optax.apply_updates(p, updates), s), mse

    (params, opt_state), mses = jax.lax.scan(body, (params, opt_state), jnp.arange(n))
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                                for x in jax.tree_util.tree_leaves(params)]))
    return params, opt_state, mses[-1], finite


def train(model: PyTree, X: Float[Array, "N F"], Y: Float[Array, "N O"], *,
          optimizer: optax.GradientTransformation, regularisation: optax.Schedule,
          regulariser: Callable[[PyTree], Array], steps: int, key: PRNGKeyArray,
          chunk: int = 500) -> TrainResult:
    """Train `model` on `(X, Y)` for `steps` full-batch steps.

    The loss is `mse + regularisation(step) · regulariser(model) + mean division
    penalty`. Returns the trained model, its final MSE, and whether it diverged.
    """
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    done, mse = 0, jnp.inf
    while done < steps:
        n = min(chunk, steps - done)
        params, opt_state, mse, finite = _chunk(params, static, opt_state, jnp.int32(done), key,
                                                X, Y, optimizer, regularisation, regulariser, n)
        done += n
        if not (bool(finite) and bool(jnp.isfinite(mse))):
            return TrainResult(eqx.combine(params, static), float("inf"), True, done)
    return TrainResult(eqx.combine(params, static), float(mse), False, done)

"""The objective of a batch of lanes: losses, residuals and forward-mode derivatives.

A *lane* is one (expression, start) pair; lanes are independent, so the derivative of
lane `b`'s prediction with respect to its own constants is one `jax.jvp` per constant
slot with the same one-hot tangent for every lane (what `jax.jacfwd` does, without the
`[B, N, B, K]` cross terms). Only `Evaluator.predict` is called, so any evaluation
kernel that supports forward mode works.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._evaluate import Evaluator, l2_loss, reduce_loss
from .._tree import Population
from ._linalg import tangent_widths, width_branch

__all__ = ["Objective", "expression_loss", "lane_loss"]


def lane_loss(
    pred: Float[Array, "lanes rows"],
    ok: Bool[Array, "lanes rows"],
    y: Float[Array, " rows"],
    weights: Float[Array, " rows"] | None,
    elementwise_loss: Callable,
    loss_function: Callable | None,
) -> Float[Array, " lanes"]:
    """Loss per lane, +inf unless every row is ok and the loss is finite.

    `loss_function(pred [N], y [N], weights [N] | None) -> scalar` (PySR's
    `loss_function`) replaces the mean elementwise loss when given.
    """
    if loss_function is None:
        return reduce_loss(pred, ok, y, weights, elementwise_loss)
    safe = jnp.where(ok, pred, 0.0)
    loss = jax.vmap(lambda p: loss_function(p, y, weights))(safe)
    loss = jnp.asarray(loss, pred.dtype)
    good = jnp.all(ok, axis=-1) & jnp.isfinite(loss)
    return jnp.where(good, jnp.where(good, loss, 0.0), jnp.inf)


def expression_loss(
    evaluator: Evaluator,
    pop: Population,
    Xt: Float[Array, "features rows"],
    y: Float[Array, " rows"],
    weights: Float[Array, " rows"] | None,
    loss_function_expression: Callable,
) -> Float[Array, " lanes"]:
    """Loss per member of `loss_function_expression(f, X, y, weights) -> scalar`.

    `f(X [M, F]) -> [M]` is the member itself as a JAX function of its inputs, so a loss
    may differentiate it with respect to the data (`jax.jvp(f, (X,), (e0,))` gives
    df/dx0 on every row) or evaluate it at points of its own. +inf unless the member is
    ok on every row of `X` and the loss is finite.
    """

    def one(op, arg, const):
        member = Population(op[None], arg[None], const[None])

        def f(X):
            return evaluator.predict(member, jnp.asarray(X, Xt.dtype).T)[0][0]

        ok = evaluator.predict(member, Xt)[1][0]
        loss = jnp.asarray(loss_function_expression(f, Xt.T, y, weights), Xt.dtype)
        good = jnp.all(ok) & jnp.isfinite(loss)
        return jnp.where(good, jnp.where(good, loss, 0.0), jnp.inf)

    return jax.vmap(one)(pop.op, pop.arg, pop.const)


class Objective(eqx.Module):
    """What the optimisers see: the lanes' fixed structure plus the data and the loss."""

    evaluator: Evaluator
    op: Int[Array, "lanes length"]
    arg: Int[Array, "lanes length"]
    free: Bool[Array, "lanes nconst"]
    Xt: Float[Array, "features rows"]
    y: Float[Array, " rows"]
    weights: Float[Array, " rows"] | None
    elementwise_loss: Callable = eqx.field(static=True, default=l2_loss)
    loss_function: Callable | None = eqx.field(static=True, default=None)
    loss_function_expression: Callable | None = eqx.field(static=True, default=None)
    #: Lanes `g·M + m` (g < groups) share the structure of lane `m`: the restarts of one
    #: member. Kernels that evaluate such lanes together (`predict_shared`) then run
    #: each structure once for all of them.
    groups: int = eqx.field(static=True, default=1)
    #: Tangent counts compiled besides the full table (`ConstantOptions.narrow_widths`).
    narrow_widths: tuple[int, ...] = eqx.field(static=True, default=())

    def widths(self) -> tuple[int, ...]:
        return tangent_widths(self.narrow_widths, self.free.shape[-1])

    def _shared(self, c: Float[Array, "groups_lanes nconst"], G: int):
        """Predictions of lanes laid out `[G·M]` (lane `g·M + m` has the structure of
        lane `m`) through `predict_shared`."""
        B, K = c.shape
        M = self.op.shape[0] // self.groups
        cs = c.reshape(G, M, K).transpose(1, 0, 2)
        pred, ok = self.evaluator.predict_shared(self.op[:M], self.arg[:M], cs, self.Xt)
        back = lambda a: a.transpose(1, 0, 2).reshape(B, -1)  # noqa: E731
        return back(pred), back(ok)

    def _sharing(self) -> bool:
        return self.groups > 1 and self.evaluator.shares_structure

    def predict(self, c: Float[Array, "lanes nconst"]):
        if self._sharing():
            return self._shared(c, self.groups)
        return self.evaluator.predict(Population(self.op, self.arg, c), self.Xt)

    def loss(self, c: Float[Array, "lanes nconst"]) -> Float[Array, " lanes"]:
        """One evaluation of every lane."""
        if self.loss_function_expression is not None:
            return expression_loss(self.evaluator, Population(self.op, self.arg, c), self.Xt,
                                   self.y, self.weights, self.loss_function_expression)
        pred, ok = self.predict(c)
        return lane_loss(pred, ok, self.y, self.weights, self.elementwise_loss, self.loss_function)

    def loss_many(self, c: Float[Array, "trials lanes nconst"]) -> Float[Array, "trials lanes"]:
        """Every lane at `M` trial points: one evaluation of an `[M·B]` population
        (Levenberg-Marquardt's; never with a `loss_function_expression`, see
        `resolve_algorithm`)."""
        M, B, K = c.shape
        if self._sharing():
            pred, ok = self._shared(c.reshape(M * B, K), M * self.groups)
        else:
            op = jnp.tile(self.op, (M, 1))
            arg = jnp.tile(self.arg, (M, 1))
            pred, ok = self.evaluator.predict(Population(op, arg, c.reshape(M * B, K)), self.Xt)
        loss = lane_loss(pred, ok, self.y, self.weights, self.elementwise_loss, self.loss_function)
        return loss.reshape(M, B)

    def _tangents(self, fn, c, width: int):
        """`fn(c) -> (value, aux)`, and the derivatives of `value` along the first
        `width` slots `[width, ...]`."""
        K = c.shape[-1]
        basis = jnp.broadcast_to(jnp.eye(K, dtype=c.dtype)[:width, None, :], (width,) + c.shape)

        def one(t):
            return jax.jvp(fn, (c,), (t,), has_aux=True)

        return jax.vmap(one, out_axes=(None, 0, None))(basis)

    def at_width(self, fn: Callable, *operands):
        """`fn(*operands, width=w)` at the narrowest `w` of `widths()` that covers every
        free slot of the batch (one `lax.switch` branch per width): a forward-mode pass
        costs more with every tangent, and members rarely use every slot of the table."""
        widths = self.widths()
        if len(widths) == 1:
            return fn(*operands, width=widths[0])
        branches = [functools.partial(fn, width=w) for w in widths]
        return jax.lax.switch(width_branch(self.free, widths), branches, *operands)

    def loss_and_grad(self, c):
        """Loss `[B]` and gradient `[B, K]` (zero on non-free slots) by forward mode."""
        return self.at_width(self._loss_and_grad, c)

    def _loss_and_grad(self, c, width: int):
        K = c.shape[-1]
        loss, dloss, _ = self._tangents(lambda cc: (self.loss(cc), None), c, width)
        grad = jnp.pad(jnp.moveaxis(dloss, 0, -1), ((0, 0), (0, K - width)))
        grad = jnp.where(self.free, grad, 0.0)
        good = jnp.isfinite(loss) & jnp.all(jnp.isfinite(grad), axis=-1)
        return jnp.where(good, loss, jnp.inf), jnp.where(good[:, None], grad, 0.0)

    def gauss_newton(self, c):
        """Squared-error loss `[B]`, `JᵀJ` `[B, K, K]` and `Jᵀr` `[B, K]` of the residuals.

        Residuals are `sqrt(w_n / Σw) (pred_n - y_n)`, so `Σ r²` is the (weighted) mean
        squared error that `l2_loss` gives. Rows and columns of slots that no lane uses
        are zero.
        """
        return self.at_width(self._gauss_newton, c)

    def _gauss_newton(self, c, width: int):
        K = c.shape[-1]
        N = self.y.shape[0]
        if self.weights is None:
            sw = jnp.full((N,), 1.0 / jnp.sqrt(N), self.y.dtype)
        else:
            sw = jnp.sqrt(self.weights / jnp.sum(self.weights)).astype(self.y.dtype)

        def fn(cc):
            pred, ok = self.predict(cc)
            return jnp.where(ok, pred, 0.0), ok

        pred, dpred, ok = self._tangents(fn, c, width)
        r = sw * (pred - self.y)
        J = jnp.where(ok[None] & self.free.T[:width, :, None], dpred, 0.0) * sw  # [w, B, N]
        loss = jnp.sum(r * r, axis=-1)
        pad = K - width
        JtJ = jnp.pad(jnp.einsum("kbn,jbn->bkj", J, J), ((0, 0), (0, pad), (0, pad)))
        Jtr = jnp.pad(jnp.einsum("kbn,bn->bk", J, r), ((0, 0), (0, pad)))
        good = (
            jnp.all(ok, axis=-1)
            & jnp.isfinite(loss)
            & jnp.all(jnp.isfinite(JtJ), axis=(-2, -1))
            & jnp.all(jnp.isfinite(Jtr), axis=-1)
        )
        return (
            jnp.where(good, loss, jnp.inf),
            jnp.where(good[:, None, None], JtJ, 0.0),
            jnp.where(good[:, None], Jtr, 0.0),
        )

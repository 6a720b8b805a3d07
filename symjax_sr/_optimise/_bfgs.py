"""BFGS for a batch of independent lanes and any differentiable loss.

A fixed number of iterations. Each iteration takes the quasi-Newton direction
`d = −H g` (steepest descent where that is not a descent direction, with `H` reset),
finds a step by backtracking from `α = 1` until the Armijo condition holds, then
evaluates the gradient there by forward mode and applies the inverse-Hessian update

    H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ,   ρ = 1 / (sᵀy),

skipped when `sᵀy ≤ 0`; the first update is preceded by the scaling
`H = (sᵀy / yᵀy) I` (Nocedal & Wright eq. 6.20), and a steepest-descent step is
capped at unit length. The line search is a `while_loop` over the whole batch that
stops as soon as every live lane has its step, so it costs the slowest lane's number
of trials. A failed steepest-descent line search ends the lane; a lane never moves
to a point with a higher or non-finite loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from ._objective import Objective

__all__ = ["bfgs"]

_ARMIJO = 1e-4
_SHRINK = 0.5


def _matvec(H, v):
    return jnp.einsum("bij,bj->bi", H, v)


def bfgs(
    obj: Objective,
    c0: Float[Array, "lanes nconst"],
    live: Bool[Array, " lanes"],
    *,
    iterations: int,
    f_calls_limit: int | None,
    max_backtracks: int,
) -> tuple[Float[Array, "lanes nconst"], Float[Array, " lanes"], Int[Array, " lanes"], Float[Array, " lanes"]]:
    """Run BFGS on every live lane from `c0`; returns `(c, loss, f_calls, loss0)` as LM does."""
    limit = jnp.iinfo(jnp.int32).max if f_calls_limit is None else f_calls_limit
    B, K = c0.shape
    eye = jnp.broadcast_to(jnp.eye(K, dtype=c0.dtype), (B, K, K))
    free = obj.free
    loss, g = obj.loss_and_grad(c0)
    loss0 = loss
    calls = live.astype(jnp.int32)
    live = live & jnp.isfinite(loss)
    fresh = jnp.ones((B,), bool)  # H is the unscaled identity

    def body(_, state):
        c, loss, g, H, fresh, calls, live = state
        live = live & (calls < limit) & jnp.any(g != 0, axis=-1)
        d = -_matvec(H, g)
        slope = jnp.sum(g * d, axis=-1)
        descent = (slope < 0) & jnp.isfinite(slope)
        H = jnp.where(descent[:, None, None], H, eye)
        fresh = fresh | ~descent
        d = jnp.where(descent[:, None], d, -g)
        slope = jnp.where(descent, slope, -jnp.sum(g * g, axis=-1))
        dmax = jnp.max(jnp.abs(d), axis=-1)
        alpha = jnp.where(fresh, jnp.minimum(1.0, 1.0 / jnp.maximum(dmax, 1e-30)), 1.0)

        def armijo(a, f):
            return jnp.isfinite(f) & (f <= loss + _ARMIJO * a * slope)

        f_t = obj.loss(c + alpha[:, None] * d)
        calls = calls + live
        done = ~live | armijo(alpha, f_t)

        def ls_cond(s):
            _, _, done, _, tries = s
            return jnp.any(~done) & (tries < max_backtracks)

        def ls_body(s):
            alpha, f_t, done, calls, tries = s
            alpha = jnp.where(done, alpha, alpha * _SHRINK)
            f_new = obj.loss(c + alpha[:, None] * d)
            calls = calls + (~done & (calls < limit))
            f_t = jnp.where(done, f_t, f_new)
            done = done | armijo(alpha, f_t) | (calls >= limit)
            return alpha, f_t, done, calls, tries + 1

        alpha, f_t, _, calls, _ = jax.lax.while_loop(
            ls_cond, ls_body, (alpha, f_t, done, calls, jnp.int32(0))
        )
        found = live & armijo(alpha, f_t)
        c_new = jnp.where(found[:, None], c + alpha[:, None] * d, c)
        l_new, g_new = obj.loss_and_grad(c_new)
        calls = calls + found
        accept = found & jnp.isfinite(l_new) & (l_new <= loss) & jnp.all(jnp.isfinite(c_new), -1)

        s = c_new - c
        y = g_new - g
        sy = jnp.sum(s * y, axis=-1)
        yy = jnp.sum(y * y, axis=-1)
        curv = accept & (sy > 1e-10 * jnp.sqrt(jnp.sum(s * s, -1) * yy)) & (sy > 0)
        scale = jnp.where(curv, sy / jnp.where(curv, yy, 1.0), 1.0)
        H0 = jnp.where(fresh[:, None, None], scale[:, None, None] * eye, H)
        rho = jnp.where(curv, 1.0 / jnp.where(curv, sy, 1.0), 0.0)
        V = eye - rho[:, None, None] * s[:, :, None] * y[:, None, :]
        H_new = V @ H0 @ jnp.swapaxes(V, -1, -2) + rho[:, None, None] * s[:, :, None] * s[:, None, :]
        H_new = jnp.where(free[:, :, None] & free[:, None, :], H_new, eye)
        H = jnp.where(curv[:, None, None], H_new, jnp.where(accept[:, None, None], H, eye))
        live = live & (accept | ~fresh)
        fresh = jnp.where(curv, False, fresh | ~accept)
        c = jnp.where(accept[:, None], c_new, c)
        loss = jnp.where(accept, l_new, loss)
        g = jnp.where(accept[:, None], g_new, g)
        return c, loss, g, H, fresh, calls, live

    state = (c0, loss, g, eye, fresh, calls, live)
    c, loss, _, _, _, calls, _ = jax.lax.fori_loop(0, iterations, body, state)
    return c, loss, calls, loss0

"""The "select" kernel: blocks of similar-size expressions stepped together, for small N.

At a few hundred rows XLA:CPU pays ~0.5 µs per loop step whatever the work, so
many expressions must share each step (DESIGN.md §3). The population is sorted by
size and cut into blocks of `block` expressions; each block loops only over its own
longest expression's nodes, computes every operator on the whole block and selects
per expression. Values live in register slots `[S, block, rows]` (S = L/2 + 2), and
rows are processed in tiles of `row_block`, so memory stays bounded at any P and N.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._evaluate import Evaluator, l2_loss
from .._operators import PAD, VAR
from .._tree import Population
from ._common import (
    apply_selected,
    finish_loss,
    fused_row_loss,
    levels,
    num_registers,
    pad_rows,
)

__all__ = ["SelectEvaluator"]


class SelectEvaluator(Evaluator):
    """Blocked select over size-sorted blocks of expressions (best for small N on CPU)."""

    block: int = eqx.field(static=True, default=32)
    row_block: int = eqx.field(static=True, default=512)

    def __check_init__(self):
        if self.block < 1 or self.row_block < 1:
            raise ValueError(
                f"`block` ({self.block}) and `row_block` ({self.row_block}) must be >= 1."
            )

    def _block_eval(
        self,
        op: Int[Array, "block length"],
        arg: Int[Array, "block length"],
        const: Float[Array, "block nconst"],
        lev: Int[Array, "block length"],
        first: Int[Array, ""],
        Xt: Float[Array, "features rows"],
    ) -> tuple[Float[Array, "block rows"], Bool[Array, "block rows"]]:
        B, L = op.shape
        F, R = Xt.shape
        K = const.shape[-1]
        S = num_registers(L)
        bidx = jnp.arange(B)
        const = const.astype(Xt.dtype)

        def body(i, carry):
            regs, ok = carry
            o, a, lv = op[:, i], arg[:, i], lev[:, i]
            slot = jnp.maximum(lv - 1, 0)
            left = regs[slot, bidx]
            right = regs[jnp.minimum(lv, S - 1), bidx]
            leaf = jnp.where(
                (o == VAR)[:, None],
                Xt[jnp.clip(a, 0, F - 1)],
                const[bidx, jnp.clip(a, 0, K - 1)][:, None],
            )
            value = apply_selected(self.operators, o[:, None], left, right, leaf)
            real = (o != PAD)[:, None]
            ok = ok & (~real | jnp.isfinite(value))
            regs = regs.at[slot, bidx].set(jnp.where(real, value, left))
            return regs, ok

        init = (jnp.zeros((S, B, R), Xt.dtype), jnp.ones((B, R), bool))
        regs, ok = jax.lax.fori_loop(first, L, body, init)
        return regs[0], ok

    def _blocks(self, pop: Population):
        """Population sorted by size, padded to whole blocks, plus each block's first node."""
        P, L = pop.op.shape
        B = min(self.block, P)
        nblk = -(-P // B)
        pad = nblk * B - P
        size = pop.size
        perm = jnp.argsort(size)
        lev = levels(pop, self.operators)

        def prep(a):
            a = jnp.asarray(a)[perm]
            a = jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1))
            return a.reshape((nblk, B) + a.shape[1:])

        op, arg, const, lev = (prep(a) for a in (pop.op, pop.arg, pop.const, lev))
        first = L - (op != PAD).sum(-1).max(-1)
        return op, arg, const, lev, first, perm

    def predict(self, pop: Population, Xt: Float[Array, "features rows"]):
        P = pop.op.shape[0]
        N = Xt.shape[1]
        tiles, _, R = pad_rows(Xt, self.row_block)
        op, arg, const, lev, first, perm = self._blocks(pop)

        def per_block(blk):
            o, a, c, lv, f = blk

            def per_tile(_, xt):
                return None, self._block_eval(o, a, c, lv, f, xt)

            _, (val, ok) = jax.lax.scan(per_tile, None, tiles)  # [nb, B, R]
            B = o.shape[0]
            val = val.transpose(1, 0, 2).reshape(B, -1)[:, :N]
            ok = ok.transpose(1, 0, 2).reshape(B, -1)[:, :N]
            return val, ok

        val, ok = jax.lax.map(per_block, (op, arg, const, lev, first))
        val = val.reshape(-1, N)[:P]
        ok = ok.reshape(-1, N)[:P]
        inv = jnp.zeros_like(perm).at[perm].set(jnp.arange(P))
        val, ok = val[inv], ok[inv]
        return jnp.where(ok, val, jnp.nan), ok

    def loss(
        self,
        pop: Population,
        Xt: Float[Array, "features rows"],
        y: Float[Array, " rows"],
        weights: Float[Array, " rows"] | None = None,
        elementwise_loss: Callable = l2_loss,
    ) -> Float[Array, " pop"]:
        """Loss fused into the kernel: no `[P, N]` buffer is built."""
        P = pop.op.shape[0]
        N = Xt.shape[1]
        tiles, valid, R = pad_rows(Xt, self.row_block)
        nb = tiles.shape[0]
        yt = jnp.pad(y.astype(Xt.dtype), (0, nb * R - N)).reshape(nb, R)
        wt = None if weights is None else jnp.pad(weights.astype(Xt.dtype), (0, nb * R - N)).reshape(nb, R)
        op, arg, const, lev, first, perm = self._blocks(pop)

        def per_block(blk):
            o, a, c, lv, f = blk

            def per_tile(carry, tile):
                total, all_ok = carry
                xt, yy, vv, ww = tile
                val, ok = self._block_eval(o, a, c, lv, f, xt)
                t, g = fused_row_loss(val, ok, yy, ww, vv, elementwise_loss)
                return (total + t, all_ok & g), None

            B = o.shape[0]
            init = (jnp.zeros((B,), Xt.dtype), jnp.ones((B,), bool))
            (total, all_ok), _ = jax.lax.scan(per_tile, init, (tiles, yt, valid, wt))
            return total, all_ok

        total, all_ok = jax.lax.map(per_block, (op, arg, const, lev, first))
        total, all_ok = total.reshape(-1)[:P], all_ok.reshape(-1)[:P]
        inv = jnp.zeros_like(perm).at[perm].set(jnp.arange(P))
        return finish_loss(total[inv], all_ok[inv], N, weights)

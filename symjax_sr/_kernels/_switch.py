"""The "switch" kernel: one expression at a time with real branching per node, for large N.

Each expression runs a loop over its own real nodes only; `lax.switch` on the
opcode executes exactly one operator per node, vectorised over a tile of rows.
Operands are read inside the branches and only the node's row is returned (passing
the register buffer through the switch makes XLA copy it, DESIGN.md §3). Registers
are `[S, row_block]` per expression, so the working set stays in cache and memory is
bounded whatever P and N are. Under `vmap` a switch becomes a select over every
branch, so expressions go through `lax.map`, never `vmap`.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._evaluate import Evaluator, l2_loss
from .._operators import PAD
from .._tree import Population
from ._common import finish_loss, fused_row_loss, implementation, levels, num_registers, pad_rows

__all__ = ["SwitchEvaluator"]


class SwitchEvaluator(Evaluator):
    """Per-expression `lax.switch` per node over row tiles (best for large N on CPU)."""

    #: Rows per tile (tiles are equal, `pad_rows`). Measured on a 2-core Xeon, P=1000,
    #: N=10^4: 1850 M node-evals/s with tiles of <= 1536 rows, 1748 with 1024, 1145 with
    #: 2048 and 1272 with 4096 (the drop past ~1600 rows is the same for 16 to 64 nodes).
    row_block: int = eqx.field(static=True, default=1536)

    def __check_init__(self):
        if self.row_block < 1:
            raise ValueError(f"`row_block` ({self.row_block}) must be >= 1.")

    def _branches(self, S: int, shared: bool = False):
        """One branch per opcode from VAR on: `(regs, ok, slot, arg, const, Xt) -> (row, ok)`.
        `shared`: registers `[S, G, rows]` for `G` constant vectors `const [G, K]`."""

        def finish(row, ok):
            return row, ok & jnp.isfinite(row)

        def var(regs, ok, slot, a, const, Xt):
            return finish(jnp.broadcast_to(Xt[a], ok.shape) if shared else Xt[a], ok)

        def cst(regs, ok, slot, a, const, Xt):
            if shared:
                c = const[:, a]
                return jnp.broadcast_to(c[:, None], ok.shape), ok & jnp.isfinite(c)[:, None]
            c = const[a]
            return jnp.broadcast_to(c, ok.shape), ok & jnp.isfinite(c)

        branches = [var, cst]
        for o in self.operators.operators:
            fn = implementation(o)
            if o.arity == 1:

                def br(regs, ok, slot, a, const, Xt, fn=fn):
                    return finish(fn(regs[slot]).astype(regs.dtype), ok)

            else:

                def br(regs, ok, slot, a, const, Xt, fn=fn):
                    right = regs[jnp.minimum(slot + 1, S - 1)]
                    return finish(fn(regs[slot], right).astype(regs.dtype), ok)

            branches.append(br)
        return branches

    def _expr_eval(
        self,
        op: Int[Array, " length"],
        arg: Int[Array, " length"],
        const: Float[Array, "*groups nconst"],
        lev: Int[Array, " length"],
        Xt: Float[Array, "features rows"],
    ) -> tuple[Float[Array, "*groups rows"], Bool[Array, "*groups rows"]]:
        L = op.shape[0]
        F, R = Xt.shape
        K = const.shape[-1]
        G = const.shape[:-1]  # () or (G,): constant vectors sharing the structure
        S = num_registers(L)
        branches = self._branches(S, shared=bool(G))
        const = const.astype(Xt.dtype)
        first = L - (op != PAD).sum()

        def body(i, carry):
            regs, ok = carry
            o = op[i]
            slot = jnp.maximum(lev[i] - 1, 0)
            a = jnp.where(o == 1, jnp.clip(arg[i], 0, F - 1), jnp.clip(arg[i], 0, K - 1))
            row, ok = jax.lax.switch(
                jnp.clip(o - 1, 0, len(branches) - 1), branches, regs, ok, slot, a, const, Xt
            )
            regs = jax.lax.dynamic_update_index_in_dim(regs, row, slot, 0)
            return regs, ok

        init = (jnp.zeros((S,) + G + (R,), Xt.dtype), jnp.ones(G + (R,), bool))
        regs, ok = jax.lax.fori_loop(first, L, body, init)
        return regs[0], ok

    def _tiled(self, op, arg, const, Xt, block: int):
        """Every expression over row tiles of at most `block` rows, one after another
        (`lax.map`); `const` `[P, K]`, or `[P, G, K]` for G lanes per structure."""
        N = Xt.shape[1]
        tiles, _, _ = pad_rows(Xt, block)
        lev = levels(Population(op, arg, const[:, 0] if const.ndim == 3 else const), self.operators)

        def per_expr(e):
            o, a, c, lv = e

            def per_tile(_, xt):
                return None, self._expr_eval(o, a, c, lv, xt)

            _, out = jax.lax.scan(per_tile, None, tiles)  # [tiles, *G, R]
            return tuple(jnp.moveaxis(x, 0, -2).reshape(x.shape[1:-1] + (-1,))[..., :N] for x in out)

        val, ok = jax.lax.map(per_expr, (op, arg, const, lev))
        return jnp.where(ok, val, jnp.nan), ok

    def predict_shared(self, op, arg, const, Xt):
        """`G` constant vectors per structure evaluated in one pass over its nodes: each
        node's operator runs once on `[G, rows]` (a restart's or a trial's lanes share
        the structure), so the per-node cost is paid once for the G lanes."""
        return self._tiled(op, arg, const, Xt, max(1, self.row_block // const.shape[1]))

    def predict(self, pop: Population, Xt: Float[Array, "features rows"]):
        return self._tiled(pop.op, pop.arg, pop.const, Xt, self.row_block)

    def loss(
        self,
        pop: Population,
        Xt: Float[Array, "features rows"],
        y: Float[Array, " rows"],
        weights: Float[Array, " rows"] | None = None,
        elementwise_loss: Callable = l2_loss,
    ) -> Float[Array, " pop"]:
        """Loss fused into the kernel: no `[P, N]` buffer is built."""
        N = Xt.shape[1]
        tiles, valid, R = pad_rows(Xt, self.row_block)
        nb = tiles.shape[0]
        yt = jnp.pad(y.astype(Xt.dtype), (0, nb * R - N)).reshape(nb, R)
        wt = None if weights is None else jnp.pad(weights.astype(Xt.dtype), (0, nb * R - N)).reshape(nb, R)
        lev = levels(pop, self.operators)

        def per_expr(e):
            o, a, c, lv = e

            def per_tile(carry, tile):
                total, all_ok = carry
                xt, yy, vv, ww = tile
                val, ok = self._expr_eval(o, a, c, lv, xt)
                t, g = fused_row_loss(val, ok, yy, ww, vv, elementwise_loss)
                return (total + t, all_ok & g), None

            init = (jnp.zeros((), Xt.dtype), jnp.ones((), bool))
            (total, all_ok), _ = jax.lax.scan(per_tile, init, (tiles, yt, valid, wt))
            return total, all_ok

        total, all_ok = jax.lax.map(per_expr, (pop.op, pop.arg, pop.const, lev))
        return finish_loss(total, all_ok, N, weights)

"""The "switch" kernel: one expression at a time with real branching per node, for large N.

Each expression runs a loop over its own operator nodes only (`_Program`: leaves are
read in place from the data and the constants, so they cost no step); `lax.switch` on
the opcode executes exactly one operator per step, vectorised over a tile of rows.
Its operands are read before the switch and passed in as rows, and only the node's row
comes back (passing the register buffer through the switch makes XLA copy it, DESIGN.md
§3); the branches only compute, which also keeps the compiled program small. A node with a
non-finite operand is NaN, so the flags are `isfinite` of the value (no flag is carried
through the loop). Registers are `[S, row_block]` per expression, so the working set
stays in cache and memory is bounded whatever P and N are. Under `vmap` a switch
becomes a select over every branch, so expressions go through `lax.map`, never `vmap`.

Measured (`python -m symjax_sr.bench eval --populations 1000,4000 --rows 100,1000,10000`,
2-core machine, one device, same session): against a loop over every node with a flag
carried, 460 against 364 M node-evals/s at P=1000, N=100 (6.3× against 4.95× the NumPy
loop), 1926 against 1491 at N=1000, 2162 against 1762 at N=10^4.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._evaluate import Evaluator, l2_loss
from .._operators import CONST, FIRST_OP, PAD, VAR
from .._tree import Population
from ._common import finish_loss, fused_row_loss, implementation, num_registers, pad_rows

__all__ = ["SwitchEvaluator"]


class _Program(eqx.Module):
    """One expression as the switch kernel runs it: its operator nodes in postfix order,
    each with its operands' and its result's slots.

    A slot below `S` is a register (an operator's result goes to register `level - 1`,
    where stack discipline keeps it until it is consumed); `S + f` is feature `f`'s data
    row and `S + F + k` constant `k`. Leaves therefore cost no loop step: the loop runs
    over the operator nodes only (about half the nodes of a binary tree), and an
    operand is read from a register, the data or the constants directly.
    """

    ctrl: Int[Array, "*pop 4 length"]  # branch, first operand, second operand, result slot
    n_ops: Int[Array, " *pop"]
    root: Int[Array, " *pop"]  # slot of the expression's value


def _programs(op, arg, arity_table, S: int, F: int, K: int) -> _Program:
    """`_Program`s of a population `[P, L]`, vectorised over it (prefix sums as products
    with a triangular matrix, which XLA:CPU runs faster than its cumulative sums)."""
    L = op.shape[-1]
    arity = jnp.asarray(arity_table)[op]
    real = op != PAD
    is_var, is_const, is_op = op == VAR, op == CONST, op >= FIRST_OP
    pos = jnp.arange(L)
    upto = (pos[:, None] <= pos[None, :]).astype(jnp.float32)  # [j, i]: j <= i

    def prefix(x):
        return jnp.round(x.astype(jnp.float32) @ upto).astype(jnp.int32)

    level = prefix(jnp.where(real, 1 - arity, 0))  # stack height after each node
    slot = jnp.where(is_var, S + jnp.clip(arg, 0, F - 1),
                     jnp.where(is_const, S + F + jnp.clip(arg, 0, K - 1),
                               jnp.clip(level - 1, 0, S - 1)))
    # A binary node's left child: the last earlier node that left the stack as high as
    # the node itself does (its right subtree stays above that height).
    match = (pos[None, :] < pos[:, None])[None] & (level[:, None, :] == level[:, :, None])
    left = jnp.max(jnp.where(match & real[:, None, :], pos, 0), axis=-1)
    second = jnp.concatenate([slot[:, :1], slot[:, :-1]], axis=1)
    first = jnp.where(arity == 2, jnp.take_along_axis(slot, left, axis=1), second)
    rows = jnp.stack([op - FIRST_OP, first, second, slot], axis=1)  # [P, 4, L]
    # Operator nodes first, in postfix order: the k-th is the node before which fewer
    # than k + 1 operators have been completed.
    done = prefix(is_op)  # operators up to and including each node
    kth = jnp.sum(done[:, None, :] <= pos[None, :, None], axis=-1)  # [P, k]
    ctrl = jnp.take_along_axis(rows, jnp.minimum(kth, L - 1)[:, None, :], axis=2).astype(jnp.int32)
    root = jnp.where(op[:, L - 1] == PAD, 0, slot[:, L - 1])
    return _Program(ctrl, is_op.sum(-1).astype(jnp.int32), root.astype(jnp.int32))


class SwitchEvaluator(Evaluator):
    """Per-expression `lax.switch` per operator node over row tiles (best for large N on CPU)."""

    #: Rows per tile (tiles are equal, `pad_rows`). Measured on a 2-core Xeon, P=1000,
    #: N=10^4: 1850 M node-evals/s with tiles of <= 1536 rows, 1748 with 1024, 1145 with
    #: 2048 and 1272 with 4096 (the drop past ~1600 rows is the same for 16 to 64 nodes).
    row_block: int = eqx.field(static=True, default=1536)

    def __check_init__(self):
        if self.row_block < 1:
            raise ValueError(f"`row_block` ({self.row_block}) must be >= 1.")

    def _branches(self):
        """One branch per operator: `(a, b) -> row` on its operand rows (`b` unused by
        unary operators).

        A non-finite operand makes the result NaN, so a value is finite exactly when every
        node below it is: the expression's flags are `isfinite` of its value, as the
        reference's (every node finite), without a flag carried through the loop."""
        branches = []
        for o in self.operators.operators:
            fn = implementation(o)
            if o.arity == 1:

                def br(a, b, fn=fn):
                    return jnp.where(jnp.isfinite(a), fn(a).astype(a.dtype), jnp.nan)

            else:

                def br(a, b, fn=fn):
                    good = jnp.isfinite(a) & jnp.isfinite(b)
                    return jnp.where(good, fn(a, b).astype(a.dtype), jnp.nan)

            branches.append(br)
        return branches

    def _programs(self, op, arg, K: int, F: int) -> _Program:
        S = num_registers(op.shape[-1])
        return _programs(op, arg, self.operators.arity_table, S, F, K)

    def _expr_eval(
        self,
        prog: _Program,
        const: Float[Array, "*groups nconst"],
        Xt: Float[Array, "features rows"],
    ) -> tuple[Float[Array, "*groups rows"], Bool[Array, "*groups rows"]]:
        L = prog.ctrl.shape[-1]
        F, R = Xt.shape
        G = const.shape[:-1]  # () or (G,): constant vectors sharing the structure
        S = num_registers(L)
        const = const.astype(Xt.dtype)
        branches = self._branches()
        Xg = Xt.reshape((F,) + (1,) * len(G) + (R,))  # broadcast over the groups on read

        br, first, second, out = prog.ctrl

        def operand(regs, i):
            """Slot `i`'s row: a register, a data row or a constant (see `_Program`)."""
            reg = regs[jnp.clip(i, 0, S - 1)]
            x = Xg[jnp.clip(i - S, 0, F - 1)]
            c = const[..., jnp.clip(i - S - F, 0, const.shape[-1] - 1)][..., None]
            return jnp.broadcast_to(jnp.where(i < S, reg, jnp.where(i < S + F, x, c)), G + (R,))

        def body(k, regs):
            # Operands are read once, before the switch: its branches only compute.
            a, b = operand(regs, first[k]), operand(regs, second[k])
            row = jax.lax.switch(jnp.clip(br[k], 0, len(branches) - 1), branches, a, b)
            idx = (out[k],) + (jnp.zeros((), out.dtype),) * (regs.ndim - 1)
            return jax.lax.dynamic_update_slice(regs, row[None], idx)

        regs = jax.lax.fori_loop(0, prog.n_ops, body, jnp.zeros((S,) + G + (R,), Xt.dtype))
        val = operand(regs, prog.root)
        return val, jnp.isfinite(val)

    def _tiled(self, op, arg, const, Xt, block: int):
        """Every expression over row tiles of at most `block` rows, one after another
        (`lax.map`); `const` `[P, K]`, or `[P, G, K]` for G lanes per structure."""
        N = Xt.shape[1]
        tiles, _, _ = pad_rows(Xt, block)
        progs = self._programs(op, arg, const.shape[-1], Xt.shape[0])

        def per_expr(e):
            prog, c = e

            def per_tile(_, xt):
                return None, self._expr_eval(prog, c, xt)

            _, out = jax.lax.scan(per_tile, None, tiles)  # [tiles, *G, R]
            return tuple(jnp.moveaxis(x, 0, -2).reshape(x.shape[1:-1] + (-1,))[..., :N] for x in out)

        val, ok = jax.lax.map(per_expr, (progs, const))
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
        progs = self._programs(pop.op, pop.arg, pop.const.shape[-1], Xt.shape[0])

        def per_expr(e):
            prog, c = e

            def per_tile(carry, tile):
                total, all_ok = carry
                xt, yy, vv, ww = tile
                val, ok = self._expr_eval(prog, c, xt)
                t, g = fused_row_loss(val, ok, yy, ww, vv, elementwise_loss)
                return (total + t, all_ok & g), None

            init = (jnp.zeros((), Xt.dtype), jnp.ones((), bool))
            (total, all_ok), _ = jax.lax.scan(per_tile, init, (tiles, yt, valid, wt))
            return total, all_ok

        total, all_ok = jax.lax.map(per_expr, (progs, pop.const))
        return finish_loss(total, all_ok, N, weights)

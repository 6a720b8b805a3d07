"""Hall of fame: the best expression of each complexity, fixed-size and jittable.

Slot `c` holds the lowest-loss expression of complexity `c` seen so far. The Pareto
front is the slots whose loss is strictly lower than that of every simpler slot.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from ._tree import Population

__all__ = ["HallOfFame", "hof_init", "hof_update", "pareto_mask"]


class HallOfFame(eqx.Module):
    op: Int[Array, "C L"]
    arg: Int[Array, "C L"]
    const: Float[Array, "C K"]
    loss: Float[Array, " C"]
    exists: Bool[Array, " C"]

    @property
    def population(self) -> Population:
        return Population(self.op, self.arg, self.const)


def hof_init(maxsize: int, length: int, nconst: int, dtype=jnp.float32) -> HallOfFame:
    C = maxsize + 1
    return HallOfFame(
        op=jnp.zeros((C, length), jnp.int32),
        arg=jnp.zeros((C, length), jnp.int32),
        const=jnp.zeros((C, nconst), dtype),
        loss=jnp.full((C,), jnp.inf, dtype),
        exists=jnp.zeros((C,), bool),
    )


def hof_update(
    hof: HallOfFame,
    pop: Population,
    loss: Float[Array, " B"],
    complexity: Float[Array, " B"],
    valid: Bool[Array, " B"],
) -> HallOfFame:
    """Merge candidates `[B]` (flat) into the hall of fame; ties keep the incumbent."""
    C = hof.loss.shape[0]
    c = jnp.clip(complexity.astype(jnp.int32), 0, C - 1)
    ok = valid & jnp.isfinite(loss) & (complexity >= 1) & (complexity <= C - 1)
    onehot = (c[:, None] == jnp.arange(C)[None, :]) & ok[:, None]
    masked = jnp.where(onehot, loss[:, None], jnp.inf)
    best = jnp.argmin(masked, axis=0)
    best_loss = masked[best, jnp.arange(C)]
    take = best_loss < hof.loss
    return HallOfFame(
        op=jnp.where(take[:, None], pop.op[best], hof.op),
        arg=jnp.where(take[:, None], pop.arg[best], hof.arg),
        const=jnp.where(take[:, None], pop.const[best].astype(hof.const.dtype), hof.const),
        loss=jnp.where(take, best_loss.astype(hof.loss.dtype), hof.loss),
        exists=hof.exists | take,
    )


def pareto_mask(hof: HallOfFame) -> Bool[Array, " C"]:
    """Slots strictly better than every simpler existing slot (PySR's dominating set)."""
    loss = jnp.where(hof.exists, hof.loss, jnp.inf)
    prev_best = jnp.concatenate([jnp.array([jnp.inf], loss.dtype), jax.lax.cummin(loss)[:-1]])
    return hof.exists & (loss < prev_best)

"""Islands over devices: the collectives the search uses, and their one-device identities.

A sharded search runs `iteration` under `shard_map` on a 1-D mesh whose axis splits
the islands: each device holds `islands / devices` of them and runs their events,
evaluation and constant fitting itself. Whatever the algorithm decides across islands
(the rare-event compaction of crossovers and random trees, the constant optimiser's
batch, the hall of fame, the migration pool, the complexity frequencies) is computed
from `all_gather`ed inputs, identically on every device, so that the result is the
one-device result bit for bit: the same seed and island count give the same search on
any number of devices. Random numbers drawn over islands are drawn for all of them and
each device keeps its rows, for the same reason.

`ONE` is the single-device axis: every method is the identity, so the one-device
program is exactly the program of a search without sharding.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["IslandAxis", "ONE"]


class IslandAxis(NamedTuple):
    """The mesh axis the islands are split over (`name` None: one device, no split)."""

    name: str | None = None
    size: int = 1

    @property
    def sharded(self) -> bool:
        return self.name is not None and self.size > 1

    def index(self):
        """This device's position on the axis (0 on one device)."""
        return jax.lax.axis_index(self.name) if self.sharded else jnp.int32(0)

    def local(self, x, axis: int = 0):
        """This device's block of `x` along `axis` (`x` has the global size there)."""
        if not self.sharded:
            return x
        n = x.shape[axis] // self.size
        return jax.lax.dynamic_slice_in_dim(x, self.index() * n, n, axis)

    def gather(self, x, axis: int = 0):
        """Every device's block of `x`, concatenated along `axis` in device order."""
        if not self.sharded:
            return x
        return jax.lax.all_gather(x, self.name, axis=axis, tiled=True)

    def gather_tree(self, tree, axis: int = 0):
        return jax.tree.map(lambda x: self.gather(x, axis), tree)

    def total(self, x):
        """The sum over devices of a per-device count (integer-valued, so exact)."""
        if not self.sharded:
            return x
        return jax.lax.psum(x, self.name)


ONE = IslandAxis()

"""EQL's training phases as optax pieces: no hard-coded loop.

The three phases (warm-up without regularisation, regularised, then threshold-and-mask
with a frozen mask and fine-tuning) are two composable objects:

- `EQLPhases.regularisation(strength)`: an `optax.Schedule` `step -> λ`, zero in the
  warm-up and fine-tune phases, `strength` in between; the loss reads
  `data_loss + λ(step) · penalty(model)`.
- `threshold_mask(threshold, start_step)`: an `optax.GradientTransformation` that at
  `start_step` freezes the mask `|p| ≥ threshold` and from then on sets masked
  parameters to exactly 0 and keeps them there. Chain it after any optimiser
  (`optax.chain(optax.adam(1e-2), threshold_mask(0.01, 5000))`), and restrict it to
  some leaves with `optax.masked`.

`EQLPhases.optimizer(base, threshold)` builds that chain.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

__all__ = ["EQLPhases", "ThresholdMaskState", "threshold_mask"]


class ThresholdMaskState(NamedTuple):
    count: jax.Array  # int32 scalar: steps seen
    mask: optax.Params  # bool per parameter: kept (True) or frozen at zero


def threshold_mask(threshold: float, start_step: int) -> optax.GradientTransformation:
    """Freeze small parameters at zero from `start_step` on.

    At step `start_step` the mask `|p| ≥ threshold` is taken from the current
    parameters and frozen; from then on the update of a masked parameter is `-p`
    (it becomes exactly 0 and stays there) and kept parameters get the incoming update.
    Needs `params` in `update`.
    """
    if not threshold >= 0:
        raise ValueError(f"`threshold` must be >= 0, got {threshold!r}.")
    if not isinstance(start_step, int) or start_step < 0:
        raise ValueError(f"`start_step` must be an int >= 0, got {start_step!r}.")

    def init(params):
        mask = jax.tree_util.tree_map(lambda p: jnp.ones(jnp.shape(p), bool), params)
        return ThresholdMaskState(jnp.zeros((), jnp.int32), mask)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("`threshold_mask` needs the parameters: call "
                             "`update(grads, state, params)`.")
        at = state.count == start_step
        active = state.count >= start_step
        mask = jax.tree_util.tree_map(
            lambda m, p: jnp.where(at, jnp.abs(p) >= threshold, m), state.mask, params)
        new = jax.tree_util.tree_map(
            lambda u, p, m: jnp.where(active & ~m, -p, u).astype(u.dtype), updates, params, mask)
        return new, ThresholdMaskState(state.count + 1, mask)

    return optax.GradientTransformation(init, update)


class EQLPhases(eqx.Module):
    """Step counts of EQL's three phases (Martius & Lampert; Sahoo et al.; Kim et al.).

    ```python
    phases = EQLPhases(warmup_steps=1000, regularised_steps=4000, finetune_steps=1000)
    lam = phases.regularisation(1e-3)           # optax.Schedule
    opt = phases.optimizer(optax.adam(1e-2), threshold=0.01)
    ```
    """

    warmup_steps: int = eqx.field(static=True)
    regularised_steps: int = eqx.field(static=True)
    finetune_steps: int = eqx.field(static=True)

    def __check_init__(self):
        for name in ("warmup_steps", "regularised_steps", "finetune_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"`{name}` must be an int >= 0, got {v!r}.")
        if self.total_steps == 0:
            raise ValueError("All three phases are empty; give at least one step.")

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.regularised_steps + self.finetune_steps

    @property
    def mask_step(self) -> int:
        """The step at which the mask is taken (start of fine-tuning)."""
        return self.warmup_steps + self.regularised_steps

    def regularisation(self, strength: float) -> optax.Schedule:
        """`step -> λ`: 0, then `strength` during the regularised phase, then 0."""
        if not strength >= 0:
            raise ValueError(f"`strength` must be >= 0, got {strength!r}.")
        start, stop = self.warmup_steps, self.mask_step

        def schedule(step):
            on = (step >= start) & (step < stop)
            return jnp.where(on, strength, 0.0)

        return schedule

    def optimizer(self, base: optax.GradientTransformation, threshold: float,
                  maskable=None) -> optax.GradientTransformation:
        """`base` followed by `threshold_mask` at the start of fine-tuning.

        `maskable`: optional `optax.masked` mask (pytree or callable) of the parameters
        the threshold applies to; all of them when None.
        """
        tm = threshold_mask(threshold, self.mask_step)
        if maskable is not None:
            tm = optax.masked(tm, maskable)
        return optax.chain(base, tm)

"""`EQLOptions`: every EQLRegressor setting, typed, validated in one place, hashable.

Being hashable lets the training pieces (network structure, optimiser, λ schedule,
regulariser) be built once per options value and reused, so repeated fits with the
same options compile once.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import optax

from ._layers import EQL, _canonical_units
from ._regularisers import REGULARISERS
from ._schedule import EQLPhases
from ._units import get_unit

__all__ = ["EQLOptions", "training_setup"]


@dataclasses.dataclass(frozen=True)
class EQLOptions:
    """Settings of one EQL fit (see `EQLRegressor` for their meaning)."""

    units: tuple[str, ...]
    hidden_layers: int = 2
    division: bool = False
    regulariser: str = "l12"
    regularisation_strength: float = 1e-3
    learning_rate: float = 1e-2
    warmup_steps: int = 1000
    regularised_steps: int = 4000
    finetune_steps: int = 1000
    threshold: float = 0.01
    round_digits: int = 3
    n_trials: int = 1
    max_restarts: int = 5
    division_threshold: float = 1e-3
    exp_clip: float = 10.0
    init_scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "units", _canonical_units(self.units))
        if self.regulariser not in REGULARISERS:
            raise ValueError(
                f"Unknown `regulariser` {self.regulariser!r}; valid: "
                f"{', '.join(map(repr, REGULARISERS))}."
            )
        ints = {"hidden_layers": 0, "warmup_steps": 0, "regularised_steps": 0,
                "finetune_steps": 0, "round_digits": 0, "n_trials": 1, "max_restarts": 0}
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"`{name}` must be an int >= {low}, got {v!r}.")
        positive = ("learning_rate", "exp_clip", "init_scale")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"`{name}` must be a number > 0, got {v!r}.")
        if not isinstance(self.division_threshold, (int, float)) or not self.division_threshold > 0:
            raise ValueError(f"`division_threshold` must be a number > 0, got {self.division_threshold!r}.")
        for name in ("regularisation_strength", "threshold"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"`{name}` must be a number >= 0, got {v!r}.")
        if not isinstance(self.division, bool):
            raise ValueError(f"`division` must be True or False, got {self.division!r}.")
        EQLPhases(self.warmup_steps, self.regularised_steps, self.finetune_steps)

    @property
    def phases(self) -> EQLPhases:
        return EQLPhases(self.warmup_steps, self.regularised_steps, self.finetune_steps)

    @property
    def operators(self) -> tuple[list[str], list[str]]:
        """(binary, unary) registry operators that can express every extracted formula."""
        unary: list[str] = []
        for u in self.units:
            unary += [o for o in get_unit(u).operators if o not in unary and o != "/"]
        return ["+", "-", "*", "/", "^"], unary

    def network(self, in_features: int, out_features: int, key) -> EQL:
        return EQL(in_features, out_features, hidden_layers=self.hidden_layers, units=self.units,
                   division=self.division, gates=self.regulariser == "l0",
                   division_threshold=self.division_threshold, exp_clip=self.exp_clip,
                   init_scale=self.init_scale, key=key)


@functools.lru_cache(maxsize=32)
def training_setup(options: EQLOptions):
    """`(optimizer, λ schedule, regulariser)` for `options`, built once per value."""
    phases = options.phases
    gated = options.regulariser == "l0"

    def maskable(params):
        spec = jax.tree_util.tree_map(lambda _: True, params)
        if gated:
            spec = eqx.tree_at(lambda m: tuple(l.log_alpha for l in m.layers), spec,
                               replace=(False,) * len(spec.layers))
        return spec

    optimizer = phases.optimizer(optax.adam(options.learning_rate), options.threshold, maskable)
    schedule = phases.regularisation(options.regularisation_strength)
    return optimizer, schedule, REGULARISERS[options.regulariser]

"""EQL layers and networks as equinox modules.

An `EQLLayer` is a linear map `z = x W + b` followed by a bank of units (`_units.py`):
unary units read one entry of `z`, binary units (`product`, `division`) two. An `EQL`
network stacks hidden `EQLLayer`s and ends in a linear layer (`identity` units), or in
EQL÷'s division layer. Both act on one sample (`vmap` for batches), as equinox layers
do, so an `EQLLayer` drops into any bigger model: an MLP, a neural-ODE vector field,
an encoder-decoder.

With `gates=True` every weight has a hard-concrete gate (Louizos et al., relaxed L0):
pass `key=` to sample the gates (training), leave it out for the deterministic gate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._units import apply_division, apply_unary, get_unit

__all__ = ["EQLLayer", "EQL", "DEFAULT_UNITS", "GATE_LIMITS", "hard_concrete"]

#: Kim et al.'s hidden units: constant, identity, square, sin, exp, sigmoid, product.
DEFAULT_UNITS = ("constant", "identity", "square", "sin", "exp", "sigmoid", "product", "product")
#: Hard-concrete stretch interval (γ, ζ) and temperature β (Louizos et al. 2018).
GATE_LIMITS = (-0.1, 1.1, 2.0 / 3.0)


def _canonical_units(units: Sequence[str]) -> tuple[str, ...]:
    if isinstance(units, str):
        raise TypeError(f"`units` is a list of unit names, e.g. ['identity', 'sin'], not {units!r}.")
    names = tuple(get_unit(u).name for u in units)
    if not names:
        raise ValueError("`units` is empty; an EQL layer needs at least one unit.")
    return names


def hard_concrete(log_alpha, key: PRNGKeyArray | None):
    """Gate values in [0, 1]: sampled with `key`, else the deterministic test-time gate."""
    gamma, zeta, beta = GATE_LIMITS
    if key is None:
        s = jax.nn.sigmoid(log_alpha)
    else:
        u = jax.random.uniform(key, log_alpha.shape, minval=1e-6, maxval=1.0 - 1e-6)
        s = jax.nn.sigmoid((jnp.log(u) - jnp.log1p(-u) + log_alpha) / beta)
    return jnp.clip(s * (zeta - gamma) + gamma, 0.0, 1.0)


class EQLLayer(eqx.Module):
    """Linear map then a bank of EQL units.

    **Arguments:**

    - `in_features`: input size.
    - `units`: unit names, one per output (`identity`, `sin`, `cos`, `exp`, `sigmoid`,
      `square`, `constant`, `product`, `division`, or any unary registry operator).
    - `gates`: add hard-concrete gates on the weights (for `l0_penalty`).
    - `division_threshold`: EQL÷'s θ: `division` returns 0 where the denominator is ≤ θ.
    - `exp_clip`: `exp` units see `min(z, exp_clip)`.
    - `preactivation_clip`: the linear outputs are clipped to `±preactivation_clip` so
      that no unit overflows (gradients stay finite; 0 beyond the clip).
    - `init_scale`: weights start `U(-s, s)` with `s = init_scale / sqrt(in_features)`.
    - `key`: PRNG key for the initial weights.

    Called on `x [in_features]`, returns `[len(units)]`.

    ```python
    layer = EQLLayer(2, ["identity", "sin", "product"], key=jax.random.key(0))
    layer(jnp.ones(2))  # shape (3,)
    ```
    """

    weight: Float[Array, "in lin"]
    bias: Float[Array, " lin"]
    log_alpha: Float[Array, "in lin"] | None
    units: tuple[str, ...] = eqx.field(static=True)
    in_features: int = eqx.field(static=True)
    division_threshold: float = eqx.field(static=True)
    exp_clip: float = eqx.field(static=True)
    preactivation_clip: float = eqx.field(static=True)

    def __init__(self, in_features: int, units: Sequence[str], *, gates: bool = False,
                 division_threshold: float = 1e-3, exp_clip: float = 10.0,
                 preactivation_clip: float = 1e4, init_scale: float = 1.0,
                 key: PRNGKeyArray):
        if not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"`in_features` must be a positive int, got {in_features!r}.")
        if not division_threshold > 0:
            raise ValueError(f"`division_threshold` must be > 0, got {division_threshold!r}.")
        if not preactivation_clip > 0:
            raise ValueError(f"`preactivation_clip` must be > 0, got {preactivation_clip!r}.")
        self.units = _canonical_units(units)
        self.in_features = in_features
        self.division_threshold = float(division_threshold)
        self.exp_clip = float(exp_clip)
        self.preactivation_clip = float(preactivation_clip)
        n_lin = sum(get_unit(u).arity for u in self.units)
        wkey, bkey = jax.random.split(key)
        s = init_scale / math.sqrt(in_features)
        self.weight = jax.random.uniform(wkey, (in_features, n_lin), minval=-s, maxval=s)
        self.bias = jax.random.uniform(bkey, (n_lin,), minval=-s, maxval=s)
        self.log_alpha = jnp.full((in_features, n_lin), 2.0) if gates else None

    @property
    def out_features(self) -> int:
        return len(self.units)

    def effective_weight(self, *, key: PRNGKeyArray | None = None) -> Float[Array, "in lin"]:
        """The weights times their gates (deterministic gates without `key`)."""
        if self.log_alpha is None:
            return self.weight
        return self.weight * hard_concrete(self.log_alpha, key)

    def forward(self, x: Float[Array, " in"], *, key: PRNGKeyArray | None = None
                ) -> tuple[Float[Array, " out"], Float[Array, ""]]:
        """`(output, division penalty Σ max(θ - denominator, 0))` for one sample."""
        z = x @ self.effective_weight(key=key) + self.bias
        z = jnp.clip(z, -self.preactivation_clip, self.preactivation_clip)
        outs, penalty, i = [], jnp.zeros((), z.dtype), 0
        for name in self.units:
            unit = get_unit(name)
            if unit.arity == 1:
                outs.append(apply_unary(unit, z[i], self.exp_clip))
            elif name == "division":
                q, p = apply_division(z[i], z[i + 1], self.division_threshold)
                outs.append(q)
                penalty = penalty + p
            else:
                outs.append(unit.jax_fn(z[i], z[i + 1]))
            i += unit.arity
        return jnp.stack(outs), penalty

    def __call__(self, x: Float[Array, " in"], *, key: PRNGKeyArray | None = None
                 ) -> Float[Array, " out"]:
        return self.forward(x, key=key)[0]


class EQL(eqx.Module):
    """An equation-learner network: hidden `EQLLayer`s, then a linear (or division) output.

    **Arguments:**

    - `in_features`, `out_features`: sizes.
    - `hidden_layers`: number of hidden `EQLLayer`s (any depth ≥ 0).
    - `units`: the hidden layers' units (the same bank in every hidden layer).
    - `division`: end in EQL÷'s division layer (`out_features` division units) instead of
      a linear layer.
    - `gates`, `division_threshold`, `exp_clip`, `init_scale`: as `EQLLayer`.
    - `key`: PRNG key.

    ```python
    net = EQL(2, 1, hidden_layers=2, key=jax.random.key(0))
    jax.vmap(net)(jnp.ones((5, 2)))  # shape (5, 1)
    ```
    """

    layers: tuple[EQLLayer, ...]

    def __init__(self, in_features: int, out_features: int, *, hidden_layers: int = 2,
                 units: Sequence[str] = DEFAULT_UNITS, division: bool = False,
                 gates: bool = False, division_threshold: float = 1e-3, exp_clip: float = 10.0,
                 init_scale: float = 1.0, key: PRNGKeyArray):
        if not isinstance(hidden_layers, int) or hidden_layers < 0:
            raise ValueError(f"`hidden_layers` must be an int >= 0, got {hidden_layers!r}.")
        if not isinstance(out_features, int) or out_features < 1:
            raise ValueError(f"`out_features` must be a positive int, got {out_features!r}.")
        units = _canonical_units(units)
        keys = jax.random.split(key, hidden_layers + 1)
        kw = dict(gates=gates, division_threshold=division_threshold, exp_clip=exp_clip,
                  init_scale=init_scale)
        layers, n = [], in_features
        for k in keys[:-1]:
            layers.append(EQLLayer(n, units, key=k, **kw))
            n = len(units)
        last = ("division" if division else "identity",) * out_features
        layers.append(EQLLayer(n, last, key=keys[-1], **kw))
        self.layers = tuple(layers)

    def forward(self, x: Float[Array, " in"], *, key: PRNGKeyArray | None = None
                ) -> tuple[Float[Array, " out"], Float[Array, ""]]:
        """`(output, summed division penalty)` for one sample."""
        keys = [None] * len(self.layers) if key is None else jax.random.split(key, len(self.layers))
        penalty = jnp.zeros((), x.dtype)
        for layer, k in zip(self.layers, keys):
            x, p = layer.forward(x, key=k)
            penalty = penalty + p
        return x, penalty

    def __call__(self, x: Float[Array, " in"], *, key: PRNGKeyArray | None = None
                 ) -> Float[Array, " out"]:
        return self.forward(x, key=key)[0]

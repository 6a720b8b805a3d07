"""Elementwise losses by the LossFunctions.jl names PySR users write, or JAX callables.

`"L2DistLoss()"`, `"HuberLoss(1.0)"`, ... are parsed (name and numeric arguments),
never evaluated. The squared error maps to `l2_loss` itself, which lets the constant
optimiser use Levenberg-Marquardt.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable

import jax.numpy as jnp

from ._evaluate import l2_loss

__all__ = ["parse_elementwise_loss", "LOSSES"]


def _l1(p, t):
    return jnp.abs(p - t)


def _lp(power, p, t):
    return jnp.abs(p - t) ** power


def _huber(d, p, t):
    r = jnp.abs(p - t)
    return jnp.where(r <= d, 0.5 * r**2, d * (r - 0.5 * d))


def _l1_eps(eps, p, t):
    return jnp.maximum(0.0, jnp.abs(p - t) - eps)


def _l2_eps(eps, p, t):
    return jnp.maximum(0.0, jnp.abs(p - t) - eps) ** 2


def _logit(p, t):
    r = p - t
    return -jnp.log(4.0) - r + 2.0 * jnp.logaddexp(0.0, r)


def _quantile(tau, p, t):
    r = p - t
    return r * (jnp.where(r > 0, 1.0, 0.0) - tau)


def _periodic(c, p, t):
    return 1.0 - jnp.cos((p - t) * 2.0 * jnp.pi / c)


#: name -> (number of parameters, builder)
LOSSES: dict[str, tuple[int, Callable]] = {
    "L2DistLoss": (0, lambda: l2_loss),
    "L1DistLoss": (0, lambda: _l1),
    "LPDistLoss": (1, lambda p: functools.partial(_lp, p)),
    "HuberLoss": (1, lambda d: functools.partial(_huber, d)),
    "L1EpsilonInsLoss": (1, lambda e: functools.partial(_l1_eps, e)),
    "L2EpsilonInsLoss": (1, lambda e: functools.partial(_l2_eps, e)),
    "LogitDistLoss": (0, lambda: _logit),
    "QuantileLoss": (1, lambda tau: functools.partial(_quantile, tau)),
    "PeriodicLoss": (1, lambda c: functools.partial(_periodic, c)),
}

_PATTERN = re.compile(r"^\s*([A-Za-z0-9]+)\s*(?:\{\s*([^}]*)\s*\})?\s*\(\s*([^)]*)\s*\)\s*$")


@functools.cache
def _parse(spec: str) -> Callable:
    m = _PATTERN.match(spec)
    if not m:
        if "=" in spec:
            raise ValueError(
                f"`elementwise_loss={spec!r}` looks like a Julia function. Pass a JAX callable "
                "instead, e.g. `elementwise_loss=lambda pred, target: jnp.abs(pred - target)`."
            )
        raise ValueError(
            f"Cannot parse `elementwise_loss={spec!r}`; write it as LossFunctions.jl does, "
            "e.g. 'L2DistLoss()' or 'HuberLoss(1.0)', or pass a JAX callable."
        )
    name, curly, args = m.groups()
    if name not in LOSSES:
        close = difflib.get_close_matches(name, list(LOSSES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown loss {name!r}.{hint} Supported: {', '.join(LOSSES)}; or pass a JAX callable."
        )
    nparams, build = LOSSES[name]
    values = [v for v in (curly, args) if v]
    numbers = [float(x) for v in values for x in v.split(",") if x.strip()]
    if len(numbers) != nparams:
        raise ValueError(f"`{name}` takes {nparams} parameter(s), got {len(numbers)} in {spec!r}.")
    return build(*numbers)


def parse_elementwise_loss(spec) -> Callable:
    """A LossFunctions.jl name (string) or a JAX callable `(prediction, target) -> loss`."""
    if spec is None:
        return l2_loss
    if isinstance(spec, str):
        return _parse(spec.strip())
    if callable(spec):
        return spec
    raise TypeError(
        f"`elementwise_loss` must be a string such as 'L2DistLoss()' or a callable, got "
        f"{type(spec).__name__}."
    )

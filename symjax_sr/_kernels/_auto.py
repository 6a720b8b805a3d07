"""Picking a kernel: by timing both once on the real shapes, or by backend when untimed.

DESIGN.md §3: on CPU the blocked select kernel wins at small N (per-step overhead
dominates) and the per-expression switch kernel at large N (real branching); the
crossover depends on the machine and operator set, so a fit times both once on its
own data (`choose_evaluator`) and keeps the faster. Untimed (`"auto"` outside a fit,
and fits with `deterministic=True`), CPU uses the switch kernel, which the project's
own `bench eval` measured faster at 100 to 10^4 rows. On GPU/TPU the switch kernel
would launch one tiny kernel per node, so the vmapped select kernel is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._evaluate import Evaluator, get_evaluator, l2_loss
from .._operators import OperatorSet
from .._tree import Population
from ._select import SelectEvaluator
from ._switch import SwitchEvaluator

__all__ = ["AutoEvaluator", "choose_evaluator", "untimed_evaluator"]


def untimed_evaluator() -> str:
    """The kernel for this backend without timing anything: the choice a reproducible
    fit makes, since a timed choice can change with the machine's load (and the
    kernels round differently). On CPU that is the switch kernel, which
    `bench eval` measured faster than the select kernel at every row count from 100 to
    10^4 (P = 1000 and 4000); elsewhere the select kernel."""
    return "select" if jax.default_backend() != "cpu" else "switch"


class AutoEvaluator(Evaluator):
    """Untimed choice by backend (`untimed_evaluator`); a fit times both (`choose_evaluator`)."""

    def _pick(self) -> Evaluator:
        if untimed_evaluator() == "select":
            return SelectEvaluator(self.operators)
        return SwitchEvaluator(self.operators)

    def predict(self, pop: Population, Xt: Float[Array, "features rows"]):
        return self._pick().predict(pop, Xt)

    def loss(self, pop, Xt, y, weights=None, elementwise_loss: Callable = l2_loss):
        return self._pick().loss(pop, Xt, y, weights, elementwise_loss)

    def predict_shared(self, op, arg, const, Xt):
        return self._pick().predict_shared(op, arg, const, Xt)

    @property
    def shares_structure(self) -> bool:
        return type(self._pick()).predict_shared is not Evaluator.predict_shared


@eqx.filter_jit
def _loss(evaluator, pop, Xt, y, weights, elementwise_loss):
    return evaluator.loss(pop, Xt, y, weights, elementwise_loss)


def choose_evaluator(
    operators: OperatorSet,
    pop: Population,
    Xt: Float[Array, "features rows"],
    y: Float[Array, " rows"],
    weights: Float[Array, " rows"] | None = None,
    elementwise_loss: Callable = l2_loss,
    *,
    candidates: tuple[str, ...] = ("select", "switch"),
    repeats: int = 2,
) -> tuple[str, dict[str, float]]:
    """Time each candidate kernel's fused loss on the real shapes; return the fastest.

    Call once at the start of a fit with a population of the fit's shapes. Compilation
    is excluded (first call), then the best of `repeats` timed calls counts. On a
    non-CPU backend only `"select"` is considered (the switch kernel would launch one
    kernel per node). Returns `(name, {name: seconds per evaluation})`.
    """
    if jax.default_backend() != "cpu":
        candidates = tuple(c for c in candidates if c != "switch") or ("select",)
    Xt, y = jnp.asarray(Xt), jnp.asarray(y)
    timings: dict[str, float] = {}
    for name in candidates:
        ev = get_evaluator(name, operators)
        jax.block_until_ready(_loss(ev, pop, Xt, y, weights, elementwise_loss))
        best = float("inf")
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            jax.block_until_ready(_loss(ev, pop, Xt, y, weights, elementwise_loss))
            best = min(best, time.perf_counter() - t0)
        timings[name] = best
    return min(timings, key=timings.__getitem__), timings

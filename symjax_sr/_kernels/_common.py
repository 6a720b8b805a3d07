"""Pieces shared by the evaluation kernels: operator implementations, structure, loss.

Kernels use the fast float32 transcendental functions of `_fastmath` where one
exists and `Operator.jax_fn` otherwise, so every operator of the registry works.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from .._fastmath import FAST_UNARY, fast_sincos
from .._operators import FIRST_OP, Operator, OperatorSet
from .._tree import Population, structure

__all__ = [
    "implementation",
    "needs_guard",
    "apply_selected",
    "levels",
    "num_registers",
    "pad_rows",
    "fused_row_loss",
    "finish_loss",
]

# Operators whose derivative is finite wherever their finite operands are: they need no
# double-`where` guard for reverse-mode gradients (a zero cotangent stays zero).
_NO_GUARD = frozenset(
    {"+", "-", "*", "neg", "square", "abs", "max", "min", "relu", "sign", "round",
     "floor", "ceil"}
)


def implementation(o: Operator) -> Callable:
    """The JAX function a kernel uses for `o`: the fast one if any, else `jax_fn`."""
    return FAST_UNARY.get(o.name, o.jax_fn)


def needs_guard(o: Operator) -> bool:
    """Whether `o` must see `safe_input` where unselected (double-`where`)."""
    return o.name not in _NO_GUARD


def apply_selected(
    operators: OperatorSet,
    opcode: Int[Array, "*batch 1"],
    left: Float[Array, "*batch rows"],
    right: Float[Array, "*batch rows"],
    value: Float[Array, "*batch rows"],
) -> Float[Array, "*batch rows"]:
    """`value` overwritten by the operator `opcode` names, every operator computed once.

    Unselected operators that could produce an infinite derivative see their
    `safe_input` (the double-`where` trick) so reverse-mode gradients stay finite.
    `sin` and `cos` share one fast `sincos` evaluation when both are in the set.
    """
    names = operators.names
    shared_trig = "sin" in names and "cos" in names
    if shared_trig:
        is_sin = opcode == operators.opcode("sin")
        is_cos = opcode == operators.opcode("cos")
        trig_in = jnp.where(is_sin | is_cos, left, jnp.zeros((), left.dtype))
        s, c = fast_sincos(trig_in) if left.dtype == jnp.float32 else (jnp.sin(trig_in), jnp.cos(trig_in))
    for i, o in enumerate(operators.operators):
        sel = opcode == FIRST_OP + i
        if shared_trig and o.name in ("sin", "cos"):
            r = s if o.name == "sin" else c
        else:
            fn = implementation(o)
            if needs_guard(o):
                safe = jnp.asarray(o.safe_input, left.dtype)
                a = jnp.where(sel, left, safe)
                b = jnp.where(sel, right, safe) if o.arity == 2 else None
            else:
                a, b = left, right
            r = fn(a) if o.arity == 1 else fn(a, b)
        value = jnp.where(sel, r.astype(value.dtype), value)
    return value


def num_registers(length: int) -> int:
    """Register rows needed for expressions of at most `length` nodes (stack height + 1)."""
    return length // 2 + 2


def levels(pop: Population, operators: OperatorSet) -> Int[Array, "pop length"]:
    """Stack height after each node (`structure`'s `level`), for every expression."""
    arity = operators.arity_table
    return jax.vmap(lambda o: structure(o, arity)[0])(pop.op).astype(jnp.int32)


def pad_rows(
    Xt: Float[Array, "features rows"], block: int
) -> tuple[Float[Array, "blocks features block"], Bool[Array, "blocks block"], int]:
    """Rows split into `[blocks, F, R]` tiles (zero padded) and a valid-row mask: as few
    tiles of at most `block` rows as cover N, of equal size (a multiple of 8 rows once
    there are two or more), so that the padding is a few rows, not up to a whole tile."""
    F, N = Xt.shape
    nb = -(-N // block)
    per_tile = -(-N // nb)
    R = N if nb == 1 else -(-per_tile // 8) * 8
    pad = nb * R - N
    Xp = jnp.pad(Xt, ((0, 0), (0, pad)))
    tiles = Xp.reshape(F, nb, R).transpose(1, 0, 2)
    valid = (jnp.arange(nb * R) < N).reshape(nb, R)
    return tiles, valid, R


def fused_row_loss(
    pred: Float[Array, "*batch rows"],
    ok: Bool[Array, "*batch rows"],
    y: Float[Array, " rows"],
    w: Float[Array, " rows"] | None,
    valid: Bool[Array, " rows"],
    elementwise_loss: Callable,
) -> tuple[Float[Array, " *batch"], Bool[Array, " *batch"]]:
    """Partial (weighted) loss sum and all-ok flag of one tile of rows."""
    safe = jnp.where(ok, pred, 0.0)
    elem = elementwise_loss(safe, y)
    if w is not None:
        elem = elem * w
    elem = jnp.where(valid, elem, 0.0)
    return elem.sum(axis=-1), jnp.all(ok | ~valid, axis=-1)


def finish_loss(total, all_ok, n_rows: int, weights) -> Float[Array, " pop"]:
    """Mean from the summed loss, +inf unless every row was ok (as `reduce_loss`)."""
    loss = total / (n_rows if weights is None else jnp.sum(weights))
    good = all_ok & jnp.isfinite(loss)
    return jnp.where(good, jnp.where(good, loss, 0.0), jnp.inf)


def as_float(a, dtype) -> np.ndarray:
    return jnp.asarray(a, dtype)

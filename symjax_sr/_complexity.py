"""PySR's `complexity_mapping`: a user-defined complexity, computed inside the jitted search.

PySR takes a Julia function of the expression; here it is a Python callable that
receives an `ExpressionView` of one candidate (traced arrays, so it runs inside jit and
vmap with the rest of the search) and returns its complexity, a number that is rounded
to an integer and at least 1. That complexity replaces the sum of per-node costs
everywhere the search uses one: `maxsize`, the hall of fame's slots, parsimony, the
adaptive-parsimony frequencies and the score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._operators import CONST, FIRST_OP, PAD, VAR, OperatorSet
from ._tree import structure

__all__ = ["ExpressionView", "mapped_complexity", "check_complexity_mapping"]


@dataclasses.dataclass(frozen=True)
class ExpressionView:
    """One expression as a `complexity_mapping` sees it.

    - `op`, `arg`: right-aligned postfix node arrays of length `L` (padding, opcode 0,
      first); `arg` is the feature index of a variable leaf.
    - `operators`: the search's `OperatorSet`.

    ```python
    def complexity(e):  # PySR's default complexity, plus 2 per level of depth
        return e.size + 2 * e.depth
    PySRRegressor(complexity_mapping=complexity)
    ```
    """

    op: Int[Array, " L"]
    arg: Int[Array, " L"]
    operators: OperatorSet

    @property
    def real(self) -> Bool[Array, " L"]:
        """Which positions hold a node."""
        return self.op != PAD

    @property
    def size(self) -> Int[Array, ""]:
        """Number of nodes."""
        return self.real.sum()

    @property
    def depth(self) -> Int[Array, ""]:
        """Depth (a single leaf has depth 1)."""
        return structure(self.op, self.operators.arity_table)[2].max()

    def is_(self, name: str) -> Bool[Array, " L"]:
        """Which nodes are operator `name`, or `"variable"` / `"constant"` leaves."""
        if name == "variable":
            return self.op == VAR
        if name == "constant":
            return self.op == CONST
        names = [o.name for o in self.operators.operators]
        if name not in names:
            raise ValueError(f"`complexity_mapping` asked for operator {name!r}, which is not in "
                             f"the search's operators ({', '.join(names)}); use one of those, "
                             "'variable' or 'constant'.")
        return self.op == FIRST_OP + names.index(name)

    def count(self, name: str) -> Int[Array, ""]:
        """How many nodes are operator `name` (or `"variable"` / `"constant"` leaves)."""
        return self.is_(name).sum()

    def uses_feature(self, i: int) -> Bool[Array, ""]:
        """Whether the expression reads feature `i`."""
        return ((self.op == VAR) & (self.arg == i)).any()


def mapped_complexity(mapping: Callable, op, arg, operators: OperatorSet) -> Float[Array, "*lead"]:
    """`mapping`'s complexity of every expression of right-aligned `op`/`arg` `[..., L]`,
    rounded, at least 1."""
    lead = op.shape[:-1]
    L = op.shape[-1]

    def one(o, a):
        value = jnp.asarray(mapping(ExpressionView(o, a, operators)), jnp.float32)
        return jnp.maximum(jnp.round(value), 1.0)

    out = jax.vmap(one)(op.reshape(-1, L), arg.reshape(-1, L))
    return out.reshape(lead)


def check_complexity_mapping(mapping, operators: OperatorSet, length: int) -> None:
    """Fail at once, with the reason, if `mapping` is not a scalar function of a view."""
    if not callable(mapping):
        raise TypeError("`complexity_mapping` must be a callable `(ExpressionView) -> number`; "
                        f"Julia strings are not evaluated (got {mapping!r}).")
    op = np.zeros((1, length), np.int32)
    op[0, -1] = VAR
    try:
        out = jax.eval_shape(lambda o, a: jax.vmap(
            lambda oo, aa: mapping(ExpressionView(oo, aa, operators)))(o, a), op, op)
    except Exception as e:  # noqa: BLE001 - any failure of user code is reported as such
        raise TypeError(f"`complexity_mapping` failed on a one-leaf expression: {str(e).rstrip('.')}. It must "
                        "take an `ExpressionView` and return a number, using jax.numpy.") from e
    if out.shape != (1,) or not (jnp.issubdtype(out.dtype, jnp.number) or out.dtype == bool):
        raise TypeError(f"`complexity_mapping` must return one number per expression, got "
                        f"shape {out.shape[1:]} and dtype {out.dtype}.")

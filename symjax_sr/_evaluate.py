"""Evaluating a population on data: predictions `[P, N]` and losses `[P]`, jitted.

The evaluator interface is `Evaluator.predict(pop, Xt) -> (pred, ok)`, with
`Xt` laid out `[features, rows]`; `ok[p, n]` is False when any node of expression
`p` produced a non-finite value on row `n` (DynamicExpressions' "incomplete"
evaluation). A loss is +inf unless every row is ok. Strategies register themselves in
`_EVALUATORS` and are picked by name; `"reference"` is the simple, obviously-correct
kernel every faster one is tested against.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._operators import CONST, FIRST_OP, PAD, VAR, OperatorSet
from ._tree import Population, structure

__all__ = [
    "Evaluator",
    "ReferenceEvaluator",
    "get_evaluator",
    "register_evaluator",
    "l2_loss",
    "reduce_loss",
    "row_sum",
    "evaluate",
    "evaluate_loss",
]


def l2_loss(prediction, target):
    """Squared error, PySR's default `L2DistLoss()`."""
    return jnp.square(prediction - target)


def row_sum(x: Float[Array, "*batch rows"]) -> Float[Array, " *batch"]:
    """Sum over the last axis in a fixed pairwise order (halves added elementwise).

    XLA:CPU sums a reduction in an order that depends on the batch shape (a population
    of 8 expressions rounds differently from one of 16), so a search split over devices
    would not reproduce the one-device losses; elementwise adds keep their order.
    """
    n = x.shape[-1]
    width = 1 << max(n - 1, 0).bit_length()
    if width != n:
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - n)])
    while x.shape[-1] > 1:
        half = x.shape[-1] // 2
        x = x[..., :half] + x[..., half:]
    return x[..., 0]


def reduce_loss(
    pred: Float[Array, "pop rows"],
    ok: Bool[Array, "pop rows"],
    y: Float[Array, " rows"],
    weights: Float[Array, " rows"] | None,
    elementwise_loss: Callable = l2_loss,
) -> Float[Array, " pop"]:
    """(Weighted) mean elementwise loss per expression; +inf unless every row is ok.

    Non-ok rows are replaced before the loss so that no NaN reaches the gradient.
    """
    safe = jnp.where(ok, pred, 0.0)
    elem = elementwise_loss(safe, y[None, :])
    if weights is None:
        loss = row_sum(elem) / elem.shape[-1]
    else:
        loss = row_sum(elem * weights[None, :]) / jnp.sum(weights)
    good = jnp.all(ok, axis=-1) & jnp.isfinite(loss)
    return jnp.where(good, jnp.where(good, loss, 0.0), jnp.inf)


class Evaluator(eqx.Module):
    """Strategy interface: evaluates every expression of a population on `Xt [F, N]`."""

    operators: OperatorSet = eqx.field(static=True)

    @abc.abstractmethod
    def predict(
        self, pop: Population, Xt: Float[Array, "features rows"]
    ) -> tuple[Float[Array, "pop rows"], Bool[Array, "pop rows"]]:
        """Predictions (NaN where not ok) and the per-row ok mask."""

    def loss(
        self,
        pop: Population,
        Xt: Float[Array, "features rows"],
        y: Float[Array, " rows"],
        weights: Float[Array, " rows"] | None = None,
        elementwise_loss: Callable = l2_loss,
    ) -> Float[Array, " pop"]:
        """Per-expression loss; faster strategies may fuse it into the kernel."""
        pred, ok = self.predict(pop, Xt)
        return reduce_loss(pred, ok, y, weights, elementwise_loss)

    def predict_shared(
        self,
        op: Int[Array, "pop length"],
        arg: Int[Array, "pop length"],
        const: Float[Array, "pop groups nconst"],
        Xt: Float[Array, "features rows"],
    ) -> tuple[Float[Array, "pop groups rows"], Bool[Array, "pop groups rows"]]:
        """`predict` for `G` constant vectors per expression (the constant optimiser's
        restarts and trials). This default repeats the structures; a kernel that can
        evaluate the G lanes of one structure together overrides it."""
        P, G, K = const.shape
        pop = Population(jnp.repeat(op, G, 0), jnp.repeat(arg, G, 0), const.reshape(P * G, K))
        pred, ok = self.predict(pop, Xt)
        return pred.reshape(P, G, -1), ok.reshape(P, G, -1)

    @property
    def shares_structure(self) -> bool:
        """Whether `predict_shared` is this kernel's own (cheaper than repeating)."""
        return type(self).predict_shared is not Evaluator.predict_shared

    def free_constants(self, pop: Population) -> Bool[Array, "pop nconst"]:
        """The constant slots each expression uses (what the constant optimiser fits):
        the first `count` slots, `count` its constant leaves."""
        count = (pop.op == CONST).sum(axis=-1)
        return jnp.arange(pop.const.shape[-1])[None, :] < count[:, None]


def apply_operators(operators: OperatorSet, opcode, left, right):
    """Every operator of the set applied to the operands, the one `opcode` names selected.

    Unselected operators see their `safe_input` (double-`where`), so gradients stay
    finite. Returns the selected value (undefined where `opcode` is not an operator).
    """
    out = jnp.zeros_like(left)
    for i, o in enumerate(operators.operators):
        sel = opcode == FIRST_OP + i
        safe = jnp.asarray(o.safe_input, left.dtype)
        a = jnp.where(sel, left, safe)
        if o.arity == 1:
            r = o.jax_fn(a)
        else:
            r = o.jax_fn(a, jnp.where(sel, right, safe))
        out = jnp.where(sel, r.astype(left.dtype), out)
    return out


class ReferenceEvaluator(Evaluator):
    """Scan over nodes, every operator computed and one selected, vmapped over expressions.

    Registers follow the stack height (`structure`), so the working buffer is
    `[L/2 + 2, N]` per expression rather than `[L, N]`.
    """

    def predict(self, pop, Xt):
        arity = self.operators.arity_table
        L = pop.op.shape[-1]
        S = L // 2 + 2
        F, N = Xt.shape
        K = pop.const.shape[-1]
        dtype = Xt.dtype

        def one(op, arg, const):
            level, _, _ = structure(op, arity)
            const = const.astype(dtype)

            def step(carry, node):
                regs, ok = carry
                o, a, lv = node
                slot = jnp.maximum(lv - 1, 0)
                left = regs[slot]
                right = regs[jnp.minimum(lv, S - 1)]
                leaf = jnp.where(
                    o == VAR,
                    Xt[jnp.clip(a, 0, F - 1)],
                    jnp.broadcast_to(const[jnp.clip(a, 0, K - 1)], (N,)),
                )
                value = jnp.where(o <= CONST, leaf, apply_operators(self.operators, o, left, right))
                real = o != PAD
                regs = regs.at[slot].set(jnp.where(real, value, left))
                ok = ok & (~real | jnp.isfinite(value))
                return (regs, ok), None

            init = (jnp.zeros((S, N), dtype), jnp.ones((N,), bool))
            (regs, ok), _ = jax.lax.scan(step, init, (op, arg, level))
            return jnp.where(ok, regs[0], jnp.nan), ok

        return jax.vmap(one)(pop.op, pop.arg, pop.const)


_EVALUATORS: dict[str, type[Evaluator]] = {"reference": ReferenceEvaluator}


def register_evaluator(name: str, cls: type[Evaluator]) -> None:
    """Make an evaluation strategy available by name (used by the fast kernels)."""
    _EVALUATORS[name] = cls


def get_evaluator(name: str | Evaluator, operators: OperatorSet) -> Evaluator:
    """The evaluator called `name` for `operators` (an `Evaluator` passes through)."""
    if isinstance(name, Evaluator):
        return name
    if name not in _EVALUATORS:
        import difflib

        close = difflib.get_close_matches(str(name), list(_EVALUATORS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown evaluator {name!r}.{hint} Valid: {', '.join(sorted(_EVALUATORS))}."
        )
    return _EVALUATORS[name](operators)


def check_data(X, name: str = "X", *, allow_nonfinite: bool = False) -> np.ndarray:
    """Validate a 2-D float feature matrix `[rows, features]` and return it as NumPy."""
    try:
        arr = np.asarray(X)
    except Exception as e:  # noqa: BLE001
        raise TypeError(f"`{name}` must be array-like, got {type(X).__name__}.") from e
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == bool
    ):
        raise TypeError(
            f"`{name}` must hold numbers, got dtype {arr.dtype}; convert it with "
            f"`np.asarray({name}, dtype=np.float32)`."
        )
    if arr.ndim != 2:
        raise ValueError(
            f"`{name}` must be 2-D [rows, features], got shape {arr.shape}. Reshape your data: "
            f"`{name}.reshape(-1, 1)` for a single feature, `{name}.reshape(1, -1)` for a single row."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        what = "sample(s)" if arr.shape[0] == 0 else "feature(s)"
        raise ValueError(
            f"`{name}` has 0 {what} (shape={arr.shape}) while a minimum of 1 is required; "
            "it needs at least one row and one feature."
        )
    if not allow_nonfinite and np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"`{name}` contains NaN or inf (first at row {bad[0]}, column {bad[1]}); drop or "
            "impute those rows before fitting."
        )
    return arr


def _dtype_of(X: np.ndarray, pop: Population):
    if X.dtype == np.float64 or np.asarray(pop.const).dtype == np.float64:
        return jnp.result_type(float)  # float64 only when x64 is enabled
    return jnp.float32


@eqx.filter_jit
def _predict_jit(evaluator: Evaluator, pop: Population, Xt):
    return evaluator.predict(pop, Xt)


@eqx.filter_jit
def _loss_jit(evaluator: Evaluator, pop: Population, Xt, y, weights, elementwise_loss):
    return evaluator.loss(pop, Xt, y, weights, elementwise_loss)


def _check_population(pop: Population, operators: OperatorSet, n_features: int) -> None:
    op = np.asarray(pop.op)
    if op.ndim != 2:
        raise ValueError(f"`pop.op` must be [P, L], got shape {op.shape}.")
    if op.min(initial=0) < 0 or op.max(initial=0) >= operators.num_opcodes:
        raise ValueError(
            f"Population uses opcodes up to {op.max()} but the operator set has "
            f"{operators.num_opcodes}; evaluate it with the operator set that built it."
        )
    arg = np.asarray(pop.arg)
    if np.any(arg[op == VAR] >= n_features):
        raise ValueError(
            f"Population refers to feature {arg[op == VAR].max()} but X has {n_features} "
            "feature(s)."
        )


def evaluate(
    pop: Population,
    X,
    operators: OperatorSet,
    *,
    evaluator: str | Evaluator = "reference",
) -> tuple[Array, Array]:
    """Predictions `[P, N]` (NaN where not ok) and ok mask of `pop` on `X [N, F]`."""
    X = check_data(X)
    _check_population(pop, operators, X.shape[1])
    dtype = _dtype_of(X, pop)
    Xt = jnp.asarray(X.T, dtype=dtype)
    return _predict_jit(get_evaluator(evaluator, operators), pop, Xt)


def evaluate_loss(
    pop: Population,
    X,
    y,
    operators: OperatorSet,
    *,
    weights=None,
    elementwise_loss: Callable = l2_loss,
    evaluator: str | Evaluator = "reference",
) -> Array:
    """Per-expression (weighted) mean loss `[P]` of `pop` on `(X, y)`; +inf where not ok."""
    X = check_data(X)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"`y` must be 1-D with {X.shape[0]} rows to match X, got shape {y.shape}.")
    _check_population(pop, operators, X.shape[1])
    dtype = _dtype_of(X, pop)
    w = None if weights is None else jnp.asarray(weights, dtype)
    return _loss_jit(
        get_evaluator(evaluator, operators),
        pop,
        jnp.asarray(X.T, dtype),
        jnp.asarray(y, dtype),
        w,
        elementwise_loss,
    )

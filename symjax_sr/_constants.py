"""Constant optimisation for a whole population in one jitted call.

PySR refines the constants of a random subset of each island (probability
`optimize_probability`) with `optimizer_iterations` of BFGS from the current
constants plus `optimizer_nrestarts` perturbed starts, keeping only improvements.
Here every selected member and every start is a *lane* of one batch:

1. selected members (optionally compacted to a static `capacity`, so unselected
   members cost nothing) are repeated `1 + nrestarts` times; lane 0 starts at the
   current constants, the others at `c·(1 + 0.5·randn)`, PySR's perturbation;
2. Levenberg-Marquardt (squared-error losses) or BFGS (any differentiable loss) runs a
   fixed number of iterations on every lane, with forward-mode derivatives through
   `Evaluator.predict` only;
3. the best lane of each member replaces its constants only if its loss is finite and
   strictly below `loss_before`.

Failure is data: nothing raises inside jit, every member gets a `ConstantStatus`, and
no NaN or inf ever enters the returned population.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ._evaluate import Evaluator, l2_loss
from ._islands import ONE, IslandAxis
from ._operators import CONST
from ._optimise._bfgs import bfgs
from ._optimise._lm import levenberg_marquardt
from ._optimise._objective import Objective, expression_loss, lane_loss
from ._tree import Population

__all__ = [
    "ConstantOptions",
    "ConstantResult",
    "ConstantStatus",
    "optimize_constants",
    "population_loss",
    "select_members",
    "resolve_algorithm",
    "restart_starts",
    "constant_count",
]

_ALGORITHMS = ("BFGS", "LM")
_ALGORITHM_ALIASES = {
    "bfgs": "BFGS",
    "lm": "LM",
    "levenbergmarquardt": "LM",
    "levenberg-marquardt": "LM",
    "levenberg_marquardt": "LM",
}


def _check_int(name: str, value, low: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}: {value!r}.")
    if value < low:
        raise ValueError(f"`{name}` must be >= {low}, got {value}; {hint}")


@dataclasses.dataclass(frozen=True)
class ConstantOptions:
    """Constant-optimiser settings, PySR's `optimizer_*` options grouped and checked.

    **Arguments:**

    - `algorithm`: `"LM"` (Levenberg-Marquardt, our default) or `"BFGS"` (PySR's
      default). LM needs the squared-error loss (`l2_loss`, weighted or not); with any
      other loss `"LM"` falls back to BFGS (`resolve_algorithm` says which runs).
      Measured at P=1000, N=100, 8 iterations, same run (`python -m symjax_sr.bench
      constants --populations 1000 --rows 100 --restarts R`): on c0·x0·sin(c1·x1) from
      U(-3, 3) LM recovers 84% (R=2) / 92% (R=4) against BFGS's 80% / 89% in a third of
      its time; on random expressions LM reaches scipy's loss on 82% / 85% of members
      against 84% / 83%, in half BFGS's time.
    - `iterations`: iterations per start (`optimizer_iterations`, PySR default 8).
    - `nrestarts`: extra perturbed starts per member (`optimizer_nrestarts`, default 2).
    - `f_calls_limit`: stop a start once it has used this many loss evaluations (checked
      once per iteration, so one iteration may overshoot it)
      (`optimizer_f_calls_limit`); `None` for no limit beyond `iterations`.
    - `probability`: chance that a member is selected each iteration
      (`optimize_probability`, default 0.14); used by `select_members`.
    - `enabled`: `should_optimize_constants`; False makes `optimize_constants` a no-op.
    - `newborn_every`: besides PySR's fitting at the end of each iteration, fit the
      constants of some of the children born in the last ~`newborn_every` cycles
      (`optimize_newborn_every`; 0: PySR's behaviour only). The search's cycles run in
      chunks of about that many (the nearest divisor of `ncycles_per_iteration`), each
      followed by the fit. Why: a child with a new structure keeps its parent's
      constants, and under PySR's scheme few are fitted before they age out (at the
      defaults ~14 of 380 cycles' lifetime against one fit per iteration).
    - `newborn_probability`: chance that a child born in the chunk (still alive, with a
      finite loss and constants) is fitted (`optimize_newborn_probability`).
    - `newborn_iterations`: iterations of that fit, from one start
      (`optimize_newborn_iterations`).
    - `damping`: LM's initial damping λ (multiplies `diag(JᵀJ)`).
    - `max_backtracks`: BFGS line-search halvings per iteration.
    - `narrow_widths`: tangent counts compiled besides the whole constant table; each
      call runs the narrowest that covers every constant slot its batch uses, so fitting
      members with two constants in a table of 8 carries 2 tangents, not 8. Each width
      adds a compiled forward-mode pass (~0.5 s of compile); `()` compiles the full
      width only. Under `shard_map` each device picks its own width and the narrow
      solves round by a lane's batch position, so only `()` gives the same result on
      any number of devices (the search's setting).
    """

    algorithm: str = "LM"
    iterations: int = 8
    nrestarts: int = 2
    f_calls_limit: int | None = None
    probability: float = 0.14
    enabled: bool = True
    damping: float = 0.1
    max_backtracks: int = 10
    narrow_widths: tuple[int, ...] = (2, 4)
    newborn_every: int = 0
    newborn_probability: float = 0.1
    newborn_iterations: int = 4

    def __post_init__(self):
        if not isinstance(self.algorithm, str):
            raise TypeError(
                f"`optimizer_algorithm` must be a string, got {type(self.algorithm).__name__}."
            )
        canonical = _ALGORITHM_ALIASES.get(self.algorithm.strip().lower(), self.algorithm)
        if canonical not in _ALGORITHMS:
            lower = {a.lower(): a for a in _ALGORITHMS}
            close = difflib.get_close_matches(self.algorithm.lower(), list(lower), n=1, cutoff=0.3)
            hint = f" Did you mean {lower[close[0]]!r}?" if close else ""
            raise ValueError(
                f"Unknown `optimizer_algorithm` {self.algorithm!r}.{hint} Valid: "
                f"{', '.join(repr(a) for a in _ALGORITHMS)}."
            )
        object.__setattr__(self, "algorithm", canonical)
        _check_int("optimizer_iterations", self.iterations, 1,
                   "to skip constant optimisation set `should_optimize_constants=False`.")
        _check_int("optimizer_nrestarts", self.nrestarts, 0, "use 0 for no restarts.")
        if self.f_calls_limit is not None:
            _check_int("optimizer_f_calls_limit", self.f_calls_limit, 1,
                       "use None for no limit.")
        if isinstance(self.probability, bool) or not isinstance(self.probability, (int, float)):
            raise TypeError(f"`optimize_probability` must be a number, got {self.probability!r}.")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(
                f"`optimize_probability` must lie in [0, 1], got {self.probability}."
            )
        _check_int("optimize_newborn_every", self.newborn_every, 0,
                   "use 0 to fit constants at the end of each iteration only (PySR).")
        _check_int("optimize_newborn_iterations", self.newborn_iterations, 1,
                   "to fit no children set `optimize_newborn_every=0`.")
        if isinstance(self.newborn_probability, bool) or not isinstance(
                self.newborn_probability, (int, float)):
            raise TypeError("`optimize_newborn_probability` must be a number, got "
                            f"{self.newborn_probability!r}.")
        if not 0.0 <= self.newborn_probability <= 1.0:
            raise ValueError("`optimize_newborn_probability` must lie in [0, 1], got "
                             f"{self.newborn_probability}.")
        if not isinstance(self.enabled, bool):
            raise TypeError(
                f"`should_optimize_constants` must be True or False, got {self.enabled!r}."
            )
        if not (isinstance(self.damping, (int, float)) and self.damping > 0):
            raise ValueError(f"`damping` must be a positive number, got {self.damping!r}.")
        _check_int("max_backtracks", self.max_backtracks, 0, "use e.g. 10.")
        widths = self.narrow_widths
        if not isinstance(widths, tuple) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths
        ):
            raise ValueError(
                f"`narrow_widths` must be a tuple of positive ints, got {widths!r}; "
                "e.g. (2, 4), or () for the full table only."
            )

    @classmethod
    def from_pysr(
        cls,
        *,
        optimizer_algorithm: str = "LM",
        optimizer_iterations: int = 8,
        optimizer_nrestarts: int = 2,
        optimizer_f_calls_limit: int | None = None,
        optimize_probability: float = 0.14,
        should_optimize_constants: bool = True,
        optimize_newborn_every: int = 0,
        optimize_newborn_probability: float = 0.1,
        optimize_newborn_iterations: int = 4,
        narrow_widths: tuple[int, ...] = (),
    ) -> ConstantOptions:
        """Build from PySR's flat option names, as the search runs them: with the full
        tangent width only (`narrow_widths=()`). In the search the narrow widths cost
        1.5-2.5 s of compile and saved no measurable time (`python -m symjax_sr.bench
        search --problem nguyen-7 --niterations 150 --budget 600`: 12.4-12.9 s of search
        either way): at tens of rows a pass costs per node more than per tangent, and a
        batch of ~60 members usually has one with more than 4 constants."""
        return cls(
            algorithm=optimizer_algorithm,
            iterations=optimizer_iterations,
            nrestarts=optimizer_nrestarts,
            f_calls_limit=optimizer_f_calls_limit,
            probability=optimize_probability,
            enabled=should_optimize_constants,
            newborn_every=optimize_newborn_every,
            newborn_probability=optimize_newborn_probability,
            newborn_iterations=optimize_newborn_iterations,
            narrow_widths=narrow_widths,
        )


def resolve_algorithm(
    options: ConstantOptions, elementwise_loss: Callable = l2_loss, loss_function=None,
    loss_function_expression=None,
) -> str:
    """The algorithm that actually runs: LM only for the squared-error loss, else BFGS."""
    custom = loss_function is not None or loss_function_expression is not None
    if options.algorithm == "LM" and (custom or elementwise_loss is not l2_loss):
        return "BFGS"
    return options.algorithm


class ConstantStatus(enum.IntEnum):
    """Outcome per member, as `ConstantResult.status` reports it."""

    SKIPPED = 0  #: not selected, or no constants to fit
    IMPROVED = 1  #: the best start beat `loss_before`; constants replaced
    NOT_IMPROVED = 2  #: finite loss, but no start beat `loss_before`; unchanged
    NONFINITE = 3  #: the loss was non-finite at every start; unchanged
    OVER_CAPACITY = 4  #: selected, but beyond `capacity` this call; unchanged

    @property
    def message(self) -> str:
        return {
            0: "not selected or no constants",
            1: "improved",
            2: "no start improved on the previous loss",
            3: "non-finite loss or derivative at every start",
            4: "selected but over the batch capacity",
        }[int(self)]


class ConstantResult(eqx.Module):
    """What `optimize_constants` returns.

    - `pop`: the population with improved members' constants replaced.
    - `loss`: `[P]` the new loss where improved, `loss_before` elsewhere.
    - `improved`: `[P]` bool (reset the age of these members, as PySR does).
    - `n_evals`: total loss evaluations (one expression on all rows = 1), over all
      starts, including the evaluation of the starting point; the same unit as
      PySR's `num_evals`. A forward pass that also carries K tangents counts once.
    - `status`: `[P]` int32 `ConstantStatus` values.
    """

    pop: Population
    loss: Float[Array, " pop"]
    improved: Bool[Array, " pop"]
    n_evals: Int[Array, ""]
    status: Int[Array, " pop"]


def population_loss(
    evaluator: Evaluator,
    pop: Population,
    Xt: Float[Array, "features rows"],
    y: Float[Array, " rows"],
    weights: Float[Array, " rows"] | None = None,
    elementwise_loss: Callable = l2_loss,
    loss_function: Callable | None = None,
    loss_function_expression: Callable | None = None,
) -> Float[Array, " pop"]:
    """Loss per member with PySR's `elementwise_loss`, full `loss_function` or
    `loss_function_expression` (see `expression_loss`); +inf if not ok."""
    if loss_function_expression is not None:
        return expression_loss(evaluator, pop, Xt, y, weights, loss_function_expression)
    if loss_function is None:
        return evaluator.loss(pop, Xt, y, weights, elementwise_loss)
    pred, ok = evaluator.predict(pop, Xt)
    return lane_loss(pred, ok, y, weights, elementwise_loss, loss_function)


def constant_count(pop: Population) -> Int[Array, " pop"]:
    """Number of constants of each member (slots `0 .. count-1` are in use)."""
    return (pop.op == CONST).sum(axis=-1)


def select_members(
    pop: Population, options: ConstantOptions, *, key: PRNGKeyArray,
    evaluator: Evaluator | None = None,
) -> Bool[Array, " pop"]:
    """PySR's selection: each member with constants, independently with `probability`
    (what counts as a constant is the `evaluator`'s `free_constants`, if given)."""
    if not options.enabled:
        return jnp.zeros((len(pop),), bool)
    draw = jax.random.bernoulli(key, options.probability, (len(pop),))
    has = constant_count(pop) > 0 if evaluator is None else evaluator.free_constants(pop).any(-1)
    return draw & has


def restart_starts(
    const: Float[Array, "pop nconst"],
    count: Int[Array, " pop"] | None,
    nrestarts: int,
    *,
    key: PRNGKeyArray,
    free: Bool[Array, "pop nconst"] | None = None,
) -> Float[Array, "starts pop nconst"]:
    """The `1 + nrestarts` starting points per member, PySR's way.

    Start 0 is `const`; start `r > 0` is `const·(1 + 0.5·randn)` on the member's first
    `count` slots, or on the slots `free` marks (the others are left as they are).
    """
    K = const.shape[-1]
    if free is None:
        free = jnp.arange(K)[None, :] < count[:, None]
    noise = jax.random.normal(key, (nrestarts,) + const.shape, const.dtype)
    starts = jnp.concatenate([const[None], const[None] * (1.0 + 0.5 * noise)], axis=0)
    return jnp.where(free[None], starts, const[None])


@eqx.filter_jit
def optimize_constants(
    pop: Population,
    Xt: Float[Array, "features rows"],
    y: Float[Array, " rows"],
    weights: Float[Array, " rows"] | None = None,
    *,
    evaluator: Evaluator,
    key: PRNGKeyArray,
    options: ConstantOptions = ConstantOptions(),
    mask: Bool[Array, " pop"] | None = None,
    loss_before: Float[Array, " pop"] | None = None,
    elementwise_loss: Callable = l2_loss,
    loss_function: Callable | None = None,
    capacity: int | None = None,
    loss_function_expression: Callable | None = None,
    axis: IslandAxis = ONE,
) -> ConstantResult:
    """Fit the constants of the members selected by `mask`, all at once.

    **Arguments:**

    - `pop`: the population; `Xt [F, N]`, `y [N]`, `weights [N] | None`: the data.
    - `evaluator`: any `Evaluator` (only `predict` is used, in forward mode).
    - `key`: randomness for the restarts.
    - `options`: a `ConstantOptions`.
    - `mask`: `[P]` bool, the members to optimise (default all); members without
      constants are skipped.
    - `loss_before`: `[P]` their current loss (computed here, and counted, if None).
    - `elementwise_loss` / `loss_function`: PySR's two kinds of loss;
      `loss_function(pred [N], y [N], weights [N] | None) -> scalar` wins if given.
    - `loss_function_expression`: `(f, X, y, weights) -> scalar` with the member as a
      function `f` of the data (see `expression_loss`); wins over both. BFGS then.
    - `capacity`: static; optimise at most this many selected members (compacted, so
      the cost scales with `capacity`, not `P`). Default: `P`.
    - `axis`: under `shard_map`, the mesh axis to split the compacted batch over: every
      device then takes the same whole `pop` and returns the same whole result, having
      fitted only its block of the batch (the result is the one-device result).

    **Returns:** a `ConstantResult`.

    ```python
    res = optimize_constants(pop, Xt, y, evaluator=ReferenceEvaluator(ops), key=key,
                             mask=select_members(pop, ConstantOptions(), key=k2))
    ```
    """
    P, K = pop.const.shape
    free_all = evaluator.free_constants(pop)
    selected = jnp.ones((P,), bool) if mask is None else jnp.asarray(mask, bool)
    selected = selected & free_all.any(-1) & options.enabled
    n_evals = jnp.int32(0)
    if loss_before is None:
        loss_before = population_loss(
            evaluator, pop, Xt, y, weights, elementwise_loss, loss_function,
            loss_function_expression,
        )
        n_evals = n_evals + P
    loss_before = jnp.where(jnp.isnan(loss_before), jnp.inf, loss_before)
    if not options.enabled:
        status = jnp.full((P,), ConstantStatus.SKIPPED, jnp.int32)
        return ConstantResult(pop, loss_before, jnp.zeros((P,), bool), n_evals, status)

    # 1. Compact the selected members to `C` slots (selected first, original order).
    C = P if capacity is None else max(1, min(int(capacity), P))
    if C == P:
        idx = jnp.arange(P)
    else:
        idx = jnp.argsort(~selected, stable=True)[:C]
    active = selected[idx]
    op, arg, const0, free = pop.op[idx], pop.arg[idx], pop.const[idx], free_all[idx]

    # 2. Lanes: start r of member i is lane r*C + i; start 0 is the current constants.
    R = 1 + options.nrestarts
    starts = restart_starts(const0, None, options.nrestarts, key=key, free=free)

    # Under a sharded search, this device's block of the batch (padded with idle slots).
    Cl = -(-C // axis.size)
    pad = Cl * axis.size - C

    def block(a, ax=0):
        if pad:
            a = jnp.concatenate([a, jnp.zeros(a.shape[:ax] + (pad,) + a.shape[ax + 1:], a.dtype)], ax)
        return axis.local(a, ax)

    def rep(a):
        return jnp.broadcast_to(a[None], (R,) + a.shape).reshape((R * Cl,) + a.shape[1:])

    obj = Objective(
        evaluator, rep(block(op)), rep(block(arg)), rep(block(free)), Xt, y, weights,
        elementwise_loss=elementwise_loss, loss_function=loss_function,
        loss_function_expression=loss_function_expression, groups=R,
        narrow_widths=options.narrow_widths,
    )
    live = rep(block(active))
    c0 = block(starts, 1).reshape(R * Cl, K).astype(pop.const.dtype)
    if resolve_algorithm(options, elementwise_loss, loss_function, loss_function_expression) == "LM":
        c, loss, calls, loss0 = levenberg_marquardt(
            obj, c0, live, iterations=options.iterations,
            f_calls_limit=options.f_calls_limit, damping=options.damping,
        )
    else:
        c, loss, calls, loss0 = bfgs(
            obj, c0, live, iterations=options.iterations,
            f_calls_limit=options.f_calls_limit, max_backtracks=options.max_backtracks,
        )
    n_evals = n_evals + axis.total(jnp.sum(jnp.where(live, calls, 0)))

    # 3. Best start per member; keep it only if finite and strictly better.
    loss = jnp.where(jnp.isfinite(loss) & jnp.all(jnp.isfinite(c), -1), loss, jnp.inf)
    whole = lambda a: axis.gather(a.reshape((R, Cl) + a.shape[1:]), 1)[:, :C]  # noqa: E731
    loss, c, loss0 = whole(loss), whole(c), whole(loss0)
    best = jnp.argmin(loss, axis=0)
    best_loss = jnp.take_along_axis(loss, best[None], axis=0)[0]
    best_c = jnp.take_along_axis(c, best[None, :, None], axis=0)[0]
    before = loss_before[idx]
    improved = active & jnp.isfinite(best_loss) & (best_loss < before)
    new_const = jnp.where(improved[:, None] & free, best_c, const0)
    any_finite = jnp.any(jnp.isfinite(loss0), axis=0)
    sub_status = jnp.where(
        ~active,
        ConstantStatus.SKIPPED,
        jnp.where(
            improved,
            ConstantStatus.IMPROVED,
            jnp.where(any_finite, ConstantStatus.NOT_IMPROVED, ConstantStatus.NONFINITE),
        ),
    ).astype(jnp.int32)

    # 4. Scatter back.
    const = pop.const.at[idx].set(new_const.astype(pop.const.dtype))
    improved_p = jnp.zeros((P,), bool).at[idx].set(improved)
    loss_p = loss_before.at[idx].set(jnp.where(improved, best_loss, before))
    status = jnp.where(selected, ConstantStatus.OVER_CAPACITY, ConstantStatus.SKIPPED)
    status = status.astype(jnp.int32).at[idx].set(sub_status)
    new_pop = Population(pop.op, pop.arg, const)
    return ConstantResult(new_pop, loss_p, improved_p, n_evals, status)

"""Typed, self-validating search options: PySR's parameters grouped by concern.

Every option keeps PySR's name and default (SymbolicRegression.jl v1). The objects are
frozen and hashable: they are the static configuration of the jitted search.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ._constants import ConstantOptions
from ._mutate import MUTATIONS
from ._operators import OperatorSet

__all__ = ["MutationWeights", "SearchOptions"]


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclasses.dataclass(frozen=True)
class MutationWeights:
    """Relative probabilities of PySR's mutations (its `weight_*` parameters)."""

    mutate_constant: float = 0.0346
    mutate_operator: float = 0.293
    mutate_feature: float = 0.1
    swap_operands: float = 0.198
    rotate_tree: float = 4.26
    add_node: float = 2.47
    insert_node: float = 0.0112
    delete_node: float = 0.870
    simplify: float = 0.00209
    randomize: float = 0.000502
    do_nothing: float = 0.273
    optimize: float = 0.0

    def __post_init__(self):
        for name in MUTATIONS:
            w = getattr(self, name)
            _check(w >= 0, f"`weight_{name}` must be >= 0, got {w}.")
        _check(sum(self.as_tuple()) > 0, "At least one mutation weight must be positive.")

    def as_tuple(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, name)) for name in MUTATIONS)


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """Everything static about one search (shapes, operators, PySR's evolution options).

    `constraints` maps opcode -> (max left-argument complexity, max right) with -1 for
    unlimited; `nested_constraints` is a tuple of (outer opcode, inner opcode, max).
    `complexities` is `(per-opcode tuple, per-variable tuple, constant)`.
    `constants` holds PySR's `optimizer_*`, `optimize_probability` and
    `should_optimize_constants`. `mutation_attempts` is how many times a mutation is
    retried when its result breaks a constraint (PySR retries up to 10 times, one after
    another; here the attempts run in parallel). `dimensional_constraint_penalty` and
    `dimensionless_constants_only` apply when the data carries units (`SearchData.x_dims`).
    `n_params > 0` makes the expressions parametric (`_parametric.py`): the last
    `n_params` of the `n_features` variables are parameters with `n_categories` values.
    `complexity_mapping` (`_complexity.py`) replaces the per-node complexity sums.
    `template` (a `_template.TemplateLayout`) makes every member `n_sub` sub-trees
    combined by the template's function; `n_features` is then the largest arity.
    """

    operators: OperatorSet
    n_features: int
    maxsize: int = 30
    maxdepth: int | None = None
    nconst: int = 0  # 0 -> derived from maxsize
    populations: int = 31
    population_size: int = 27
    ncycles_per_iteration: int = 380
    tournament_selection_n: int = 15
    tournament_selection_p: float = 0.982
    parsimony: float = 0.0
    adaptive_parsimony_scaling: float = 1040.0
    use_frequency: bool = True
    use_frequency_in_tournament: bool = True
    crossover_probability: float = 0.0259
    annealing: bool = False
    alpha: float = 3.17
    perturbation_factor: float = 0.129
    probability_negate_constant: float = 0.00743
    skip_mutation_failures: bool = True
    mutation_weights: MutationWeights = MutationWeights()
    should_simplify: bool = True
    warmup_maxsize_by: float = 0.0
    migration: bool = True
    hof_migration: bool = True
    fraction_replaced: float = 0.00036
    fraction_replaced_hof: float = 0.0614
    fraction_replaced_guesses: float = 0.001
    topn: int = 12
    batching: bool = False
    batch_size: int = 50
    complexities: tuple[tuple[float, ...], tuple[float, ...], float] | None = None
    constraints: tuple[tuple[int, int, int], ...] = ()
    nested_constraints: tuple[tuple[int, int, int], ...] = ()
    constants: ConstantOptions = ConstantOptions.from_pysr()
    elementwise_loss: Callable | None = None
    loss_function: Callable | None = None
    loss_function_expression: Callable | None = None
    mutation_attempts: int = 1
    loss_scale: str = "log"
    dimensional_constraint_penalty: float = 1000.0
    dimensionless_constants_only: bool = False
    n_params: int = 0
    n_categories: int = 0
    complexity_mapping: Callable | None = None
    template: object | None = None

    def __post_init__(self):
        _check(self.n_features >= 1, f"Need at least one feature, got {self.n_features}.")
        _check(self.maxsize >= 1, f"`maxsize` must be >= 1, got {self.maxsize}.")
        _check(self.maxdepth is None or self.maxdepth >= 1,
               f"`maxdepth` must be >= 1 or None, got {self.maxdepth}.")
        _check(self.populations >= 1, f"`populations` must be >= 1, got {self.populations}.")
        _check(self.population_size >= 2,
               f"`population_size` must be >= 2, got {self.population_size}.")
        _check(1 <= self.tournament_selection_n <= self.population_size,
               f"`tournament_selection_n` ({self.tournament_selection_n}) must be between 1 and "
               f"`population_size` ({self.population_size}).")
        _check(0 < self.tournament_selection_p <= 1,
               f"`tournament_selection_p` must be in (0, 1], got {self.tournament_selection_p}.")
        _check(self.ncycles_per_iteration >= 1,
               f"`ncycles_per_iteration` must be >= 1, got {self.ncycles_per_iteration}.")
        for name in ("crossover_probability", "fraction_replaced", "fraction_replaced_hof",
                     "fraction_replaced_guesses", "probability_negate_constant"):
            v = getattr(self, name)
            _check(0 <= v <= 1, f"`{name}` must be in [0, 1], got {v}.")
        _check(self.alpha > 0, f"`alpha` must be > 0, got {self.alpha}.")
        _check(self.parsimony >= 0, f"`parsimony` must be >= 0, got {self.parsimony}.")
        _check(0 <= self.warmup_maxsize_by <= 1,
               f"`warmup_maxsize_by` must be in [0, 1], got {self.warmup_maxsize_by}.")
        _check(self.batch_size >= 1, f"`batch_size` must be >= 1, got {self.batch_size}.")
        _check(1 <= self.topn <= self.population_size,
               f"`topn` ({self.topn}) must be between 1 and `population_size`.")
        _check(self.loss_scale in ("log", "linear"),
               f"`loss_scale` must be 'log' or 'linear', got {self.loss_scale!r}.")
        _check(self.mutation_attempts >= 1, "`mutation_attempts` must be >= 1.")
        _check(self.n_params >= 0 and (self.n_params == 0 or self.n_categories >= 1),
               f"`n_params` ({self.n_params}) needs `n_categories` >= 1 ({self.n_categories}).")
        _check(self.n_features > self.n_params,
               f"`n_features` ({self.n_features}) counts the parameters ({self.n_params}) as "
               "variables after the real features; it must exceed them.")
        if self.template is not None:
            _check(self.n_params == 0 and self.complexity_mapping is None,
                   "A template combines with neither parametric expressions nor a "
                   "`complexity_mapping`.")
            _check(self.n_features == max(self.template.arities),
                   f"A template's `n_features` is its largest arity ({max(self.template.arities)}), "
                   f"got {self.n_features}.")
            _check(self.maxsize >= self.n_sub,
                   f"`maxsize` ({self.maxsize}) must leave one node for each of the template's "
                   f"{self.n_sub} expressions.")
        _check(self.dimensional_constraint_penalty >= 0,
               f"`dimensional_constraint_penalty` must be >= 0, got {self.dimensional_constraint_penalty}.")

    @property
    def n_sub(self) -> int:
        """Sub-trees per member: a template's expressions, else 1."""
        return 1 if self.template is None else self.template.n_sub

    @property
    def sub_length(self) -> int:
        """Node capacity of one sub-tree: what `maxsize` leaves after one node for each other."""
        return self.maxsize - (self.n_sub - 1)

    @property
    def length(self) -> int:
        """Node capacity L of every member (its sub-trees side by side)."""
        return self.n_sub * self.sub_length

    @property
    def const_slots(self) -> int:
        """Constant table size K of one (sub-)tree."""
        return self.nconst or max(2, min(16, (self.maxsize + 1) // 2))

    @property
    def param_slots(self) -> int:
        """Slots of a parametric expression's values (`n_params · n_categories`), kept in
        the constant table after the `const_slots` constants (`_parametric.py`), or a
        template's parameter vectors."""
        if self.template is not None:
            return self.template.n_param_values
        return self.n_params * self.n_categories

    @property
    def const_width(self) -> int:
        """Width of a population's constant table: constants, then parameter values."""
        return self.n_sub * self.const_slots + self.param_slots

    @property
    def events_per_cycle(self) -> int:
        """Regularised-evolution events per island per cycle, as PySR: ceil(P / n)."""
        return -(-self.population_size // self.tournament_selection_n)

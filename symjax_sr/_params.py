"""PySRRegressor's parameters: PySR's names and defaults, validated and mapped at once.

`build_search_options` turns the flat keyword arguments a PySR user writes into the
grouped, typed `SearchOptions` the search runs on. Julia-only parameters are accepted
and warned about once, with the reason.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._constants import ConstantOptions
from ._losses import parse_elementwise_loss
from ._operators import OperatorSet, make_operator_set
from ._options import MutationWeights, SearchOptions
from ._selection import MODEL_SELECTIONS
from ._stopping import stop_condition

__all__ = ["PYSR_DEFAULTS", "JULIA_ONLY", "check_unknown_kwargs", "build_search_options"]

#: Every PySRRegressor parameter with PySR's default (optimizer_algorithm: see ConstantOptions).
PYSR_DEFAULTS: dict[str, Any] = dict(
    model_selection="best",
    binary_operators=None,
    unary_operators=None,
    expression_spec=None,
    niterations=100,
    populations=31,
    population_size=27,
    max_evals=None,
    maxsize=30,
    maxdepth=None,
    warmup_maxsize_by=None,
    timeout_in_seconds=None,
    constraints=None,
    nested_constraints=None,
    elementwise_loss=None,
    loss_function=None,
    loss_function_expression=None,
    loss_scale="log",
    complexity_of_operators=None,
    complexity_of_constants=None,
    complexity_of_variables=None,
    complexity_mapping=None,
    parsimony=0.0,
    dimensional_constraint_penalty=None,
    dimensionless_constants_only=False,
    use_frequency=True,
    use_frequency_in_tournament=True,
    adaptive_parsimony_scaling=1040.0,
    alpha=3.17,
    annealing=False,
    early_stop_condition=None,
    ncycles_per_iteration=380,
    fraction_replaced=0.00036,
    fraction_replaced_hof=0.0614,
    guesses=None,
    fraction_replaced_guesses=0.001,
    weight_add_node=2.47,
    weight_insert_node=0.0112,
    weight_delete_node=0.870,
    weight_do_nothing=0.273,
    weight_mutate_constant=0.0346,
    weight_mutate_operator=0.293,
    weight_mutate_feature=0.1,
    weight_swap_operands=0.198,
    weight_rotate_tree=4.26,
    weight_randomize=0.000502,
    weight_simplify=0.00209,
    weight_optimize=0.0,
    crossover_probability=0.0259,
    skip_mutation_failures=True,
    migration=True,
    hof_migration=True,
    topn=12,
    should_simplify=None,
    should_optimize_constants=True,
    optimizer_algorithm="LM",
    optimizer_nrestarts=2,
    optimizer_f_calls_limit=None,
    optimize_probability=0.14,
    optimizer_iterations=8,
    # ours, not PySR's (PySR has no such step; 0 keeps its behaviour): see ConstantOptions
    optimize_newborn_every=0,
    optimize_newborn_probability=0.1,
    optimize_newborn_iterations=4,
    perturbation_factor=0.129,
    probability_negate_constant=0.00743,
    tournament_selection_n=15,
    tournament_selection_p=0.982,
    parallelism=None,
    procs=None,
    cluster_manager=None,
    heap_size_hint_in_bytes=None,
    batching=False,
    batch_size=50,
    fast_cycle=False,
    turbo=False,
    bumper=False,
    precision=32,
    autodiff_backend=None,
    random_state=None,
    deterministic=False,
    warm_start=False,
    verbosity=1,
    update_verbosity=None,
    print_precision=5,
    progress=True,
    logger_spec=None,
    input_stream="stdin",
    run_id=None,
    output_directory=None,
    temp_equation_file=False,
    tempdir=None,
    delete_tempfiles=True,
    update=False,
    output_jax_format=False,
    output_torch_format=False,
    extra_sympy_mappings=None,
    extra_torch_mappings=None,
    extra_jax_mappings=None,
    denoise=False,
    select_k_features=None,
    evaluator="auto",
)

#: Parameters that only mean something to Julia, with what happens here instead.
JULIA_ONLY: dict[str, str] = {
    "cluster_manager": "use jax.distributed for multi-host runs",
    "heap_size_hint_in_bytes": "there is no Julia heap",
    "turbo": "XLA compiles the kernels; there is no LoopVectorization switch",
    "bumper": "XLA manages buffers; there is no bump allocator",
    "fast_cycle": "cycles are batched over islands already",
    "autodiff_backend": "JAX differentiates the kernels itself",
    "input_stream": "there is no Julia REPL to read from",
    "update": "there is no Julia package to update",
    "update_verbosity": "there is no Julia package manager to report on",
    "extra_jax_mappings": "custom operators are JAX callables already",
}

def check_unknown_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Unknown keyword arguments raise `TypeError` with a "Did you mean"."""
    for name in kwargs:
        close = difflib.get_close_matches(name, list(PYSR_DEFAULTS), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise TypeError(f"PySRRegressor got an unknown keyword argument `{name}`.{hint}")


def _warn_julia_only(params: Mapping[str, Any]) -> None:
    for name, reason in JULIA_ONLY.items():
        if params.get(name) not in (None, False, PYSR_DEFAULTS[name]):
            warnings.warn(f"`{name}` is ignored: {reason}.", UserWarning, stacklevel=4)


def _dtype(precision) -> np.dtype:
    if precision in (32, 16):
        if precision == 16:
            warnings.warn("`precision=16` is not supported; using float32.", UserWarning, stacklevel=4)
        return np.dtype(np.float32)
    if precision == 64:
        return np.dtype(np.float64)
    raise ValueError(f"`precision` must be 16, 32 or 64, got {precision!r}.")


def _opcode(ops: OperatorSet, name: str, option: str) -> int:
    if name not in ops:
        raise ValueError(
            f"`{option}` mentions operator {name!r}, which is not among the operators "
            f"({', '.join(ops.names)}); add it or remove it from `{option}`."
        )
    return ops.opcode(name)


def _constraints(ops: OperatorSet, constraints) -> tuple[tuple[int, int, int], ...]:
    out = []
    for name, limit in (constraints or {}).items():
        code = _opcode(ops, name, "constraints")
        if ops.operator(code).arity == 1:
            if not isinstance(limit, (int, np.integer)):
                raise ValueError(f"`constraints[{name!r}]` is unary: give one integer, got {limit!r}.")
            out.append((code, int(limit), -1))
        else:
            if not (isinstance(limit, (tuple, list)) and len(limit) == 2):
                raise ValueError(
                    f"`constraints[{name!r}]` is binary: give (max left, max right), got {limit!r}."
                )
            out.append((code, int(limit[0]), int(limit[1])))
    return tuple(out)


def _nested(ops: OperatorSet, nested) -> tuple[tuple[int, int, int], ...]:
    out = []
    for outer, inner_map in (nested or {}).items():
        o = _opcode(ops, outer, "nested_constraints")
        if not isinstance(inner_map, Mapping):
            raise ValueError(
                f"`nested_constraints[{outer!r}]` must be a dict like {{'cos': 0}}, got {inner_map!r}."
            )
        for inner, limit in inner_map.items():
            out.append((o, _opcode(ops, inner, "nested_constraints"), int(limit)))
    return tuple(out)


def build_operators(params: Mapping[str, Any]) -> OperatorSet:
    binary = params["binary_operators"]
    unary = params["unary_operators"]
    return make_operator_set(
        ["+", "-", "*", "/"] if binary is None else list(binary),
        [] if unary is None else list(unary),
        params["extra_sympy_mappings"],
    )


PARALLELISM = ("serial", "multithreading", "multiprocessing")


def devices_of(params: Mapping[str, Any]) -> int | None:
    """PySR's `procs` and `parallelism` as the number of devices the islands are split
    over: `procs` devices of the default backend (on CPU, one host device per core, made
    if JAX has not started), None for one device (`procs` None, or `parallelism="serial"`)."""
    parallelism, procs = params["parallelism"], params["procs"]
    if parallelism is not None and parallelism not in PARALLELISM:
        raise ValueError(f"`parallelism` must be one of {', '.join(PARALLELISM)} or None, got "
                         f"{parallelism!r}.")
    if procs is None:
        return None
    if isinstance(procs, bool) or not isinstance(procs, (int, np.integer)) or procs < 0:
        raise ValueError(f"`procs` must be a non-negative int (devices to split the islands "
                         f"over), got {procs!r}.")
    if parallelism == "serial":
        if procs > 1:
            raise ValueError(f"`procs={procs}` with `parallelism='serial'`: drop one of them.")
        return None
    return max(int(procs), 1)


def build_search_options(
    params: Mapping[str, Any], n_features: int, complexity_of_variables=None, n_categories: int = 0,
    template=None,
) -> tuple[SearchOptions, np.dtype]:
    """Validate PySR's flat parameters and group them into `SearchOptions` (and the dtype).

    With a `ParametricExpressionSpec`, `n_categories` is the number of categories of the
    data, and the options count its parameters as variables after the `n_features`. With
    a `TemplateExpressionSpec`, `template` is its `TemplateLayout` for the data.
    """
    _warn_julia_only(params)
    from ._parametric import ParametricExpressionSpec, check_expression_spec

    spec = check_expression_spec(params["expression_spec"])
    n_params = int(spec.max_parameters) if isinstance(spec, ParametricExpressionSpec) else 0
    is_template = spec is not None and not n_params
    if is_template and template is None:
        raise ValueError("A `TemplateExpressionSpec` needs its layout for the data "
                         "(`_template.template_layout`); fit builds it.")
    if n_params and n_categories < 1:
        raise ValueError("`ParametricExpressionSpec` needs `category` in fit: one integer label "
                         "per row, e.g. `model.fit(X, y, category=c)`.")
    if params["model_selection"] not in MODEL_SELECTIONS:
        raise ValueError(
            f"`model_selection` must be one of {MODEL_SELECTIONS}, got {params['model_selection']!r}."
        )
    if params["loss_function"] is not None and params["elementwise_loss"] is not None:
        raise ValueError(
            "`elementwise_loss` and `loss_function` are both set; drop one (`loss_function` "
            "sees the whole prediction, `elementwise_loss` one row at a time)."
        )
    if params["loss_function"] is not None and not callable(params["loss_function"]):
        raise TypeError(
            "`loss_function` must be a JAX callable `(prediction, target, weights) -> scalar`; "
            "Julia strings are not evaluated."
        )
    lfe = params["loss_function_expression"]
    if lfe is not None:
        if not callable(lfe):
            raise TypeError(
                "`loss_function_expression` must be a JAX callable `(f, X, y, weights) -> scalar` "
                "where `f(X) -> prediction` is the candidate; Julia strings are not evaluated."
            )
        for other in ("loss_function", "elementwise_loss"):
            if params[other] is not None:
                raise ValueError(
                    f"`loss_function_expression` and `{other}` are both set; drop `{other}` "
                    "(`loss_function_expression` computes the whole loss from the candidate)."
                )
    stop_condition(params["early_stop_condition"])  # a bad string or type fails here, before compiling
    devices_of(params)
    if params["deterministic"] and params["random_state"] is None:
        raise ValueError("`deterministic=True` needs a `random_state`; set one, e.g. random_state=0.")
    dtype = _dtype(params["precision"])
    if params["logger_spec"] is not None:
        from ._logging import AbstractLoggerSpec

        if not isinstance(params["logger_spec"], AbstractLoggerSpec):
            raise TypeError(f"`logger_spec` must be a logger spec such as "
                            f"`TensorBoardLoggerSpec(log_dir='logs/run')`, got {params['logger_spec']!r}.")
    pp = params["print_precision"]
    if isinstance(pp, bool) or not isinstance(pp, (int, np.integer)) or pp < 1:
        raise ValueError(f"`print_precision` must be an integer >= 1 (significant digits), got {pp!r}.")
    ops = build_operators(params)
    maxsize = int(params["maxsize"])
    if maxsize < 3:
        raise ValueError(f"`maxsize` must be >= 3, got {maxsize}.")
    cov = complexity_of_variables if complexity_of_variables is not None else params["complexity_of_variables"]
    mapping = params["complexity_mapping"]
    if is_template:
        for name, value in (("complexity_mapping", mapping), ("complexity_of_variables", cov)):
            if value is not None:
                raise ValueError(f"`{name}` is not supported with TemplateExpressionSpec (its "
                                 "sub-expressions see their arguments, not the features); drop it.")
        n_features = max(template.arities)
    if mapping is not None:
        from ._complexity import check_complexity_mapping

        for other, value in (("complexity_of_operators", params["complexity_of_operators"]),
                             ("complexity_of_constants", params["complexity_of_constants"]),
                             ("complexity_of_variables", cov)):
            if value is not None:
                raise ValueError(f"`complexity_mapping` and `{other}` are both set; drop `{other}` "
                                 "(the mapping computes the whole complexity).")
        check_complexity_mapping(mapping, ops, maxsize)
    if n_params and cov is not None and np.ndim(cov) == 1:
        cov = list(cov) + [1.0] * n_params  # a parameter costs what a variable does by default
    complexities = None
    if params["complexity_of_operators"] or params["complexity_of_constants"] is not None or cov is not None:
        from ._tree import Complexities

        c = Complexities.make(
            ops, n_features + n_params, params["complexity_of_operators"],
            1.0 if params["complexity_of_constants"] is None else params["complexity_of_constants"],
            1.0 if cov is None else cov,
        )
        complexities = (c.operators, c.variables, c.constant)
    weights = MutationWeights(**{
        name: params[f"weight_{name}"] for name in (
            "mutate_constant", "mutate_operator", "mutate_feature", "swap_operands",
            "rotate_tree", "add_node", "insert_node", "delete_node", "simplify", "randomize",
            "do_nothing", "optimize",
        )
    })
    constants = ConstantOptions.from_pysr(
        optimizer_algorithm=params["optimizer_algorithm"],
        optimizer_iterations=params["optimizer_iterations"],
        optimizer_nrestarts=params["optimizer_nrestarts"],
        optimizer_f_calls_limit=params["optimizer_f_calls_limit"],
        optimize_probability=params["optimize_probability"],
        should_optimize_constants=params["should_optimize_constants"],
        optimize_newborn_every=params["optimize_newborn_every"],
        optimize_newborn_probability=params["optimize_newborn_probability"],
        optimize_newborn_iterations=params["optimize_newborn_iterations"],
    )
    opts = SearchOptions(
        operators=ops,
        n_features=n_features + n_params,
        maxsize=maxsize,
        maxdepth=params["maxdepth"],
        populations=int(params["populations"]),
        population_size=int(params["population_size"]),
        ncycles_per_iteration=int(params["ncycles_per_iteration"]),
        tournament_selection_n=int(params["tournament_selection_n"]),
        tournament_selection_p=float(params["tournament_selection_p"]),
        parsimony=float(params["parsimony"]),
        adaptive_parsimony_scaling=float(params["adaptive_parsimony_scaling"]),
        use_frequency=bool(params["use_frequency"]),
        use_frequency_in_tournament=bool(params["use_frequency_in_tournament"]),
        crossover_probability=float(params["crossover_probability"]),
        annealing=bool(params["annealing"]),
        alpha=float(params["alpha"]),
        perturbation_factor=float(params["perturbation_factor"]),
        probability_negate_constant=float(params["probability_negate_constant"]),
        skip_mutation_failures=bool(params["skip_mutation_failures"]),
        mutation_weights=weights,
        should_simplify=True if params["should_simplify"] is None else bool(params["should_simplify"]),
        warmup_maxsize_by=float(params["warmup_maxsize_by"] or 0.0),
        migration=bool(params["migration"]),
        hof_migration=bool(params["hof_migration"]),
        fraction_replaced=float(params["fraction_replaced"]),
        fraction_replaced_hof=float(params["fraction_replaced_hof"]),
        fraction_replaced_guesses=float(params["fraction_replaced_guesses"]),
        topn=min(int(params["topn"]), int(params["population_size"])),
        batching=bool(params["batching"]),
        batch_size=int(params["batch_size"]),
        complexities=complexities,
        constraints=_constraints(ops, params["constraints"]),
        nested_constraints=_nested(ops, params["nested_constraints"]),
        constants=constants,
        elementwise_loss=parse_elementwise_loss(params["elementwise_loss"]),
        loss_function=params["loss_function"],
        loss_function_expression=lfe,
        loss_scale=params["loss_scale"],
        dimensional_constraint_penalty=1000.0 if params["dimensional_constraint_penalty"] is None
        else float(params["dimensional_constraint_penalty"]),
        dimensionless_constants_only=bool(params["dimensionless_constants_only"]),
        n_params=n_params,
        n_categories=n_categories if n_params else 0,
        complexity_mapping=mapping,
        template=template if is_template else None,
    )
    return opts, dtype

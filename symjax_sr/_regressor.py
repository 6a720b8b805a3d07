"""`PySRRegressor`: PySR's scikit-learn estimator, running on symjax_sr's JAX search.

The estimator only orchestrates: `fit` validates the data and parameters, maps them to
`SearchOptions` (`_params.py`), runs the search (`_run.py`) once per output, and turns
each hall of fame into PySR's equations table (`_equations.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from ._devices import device_list
from ._equations import (
    atomic_write,
    equation_string,
    equations_table,
    front_rows,
    read_hall_of_fame,
    write_hall_of_fame,
)
from ._evaluate import check_data
from ._kernels import choose_evaluator, untimed_evaluator
from ._operators import OPERATORS, VAR
from ._parametric import check_expression_spec, encode_category, parameter_names
from ._params import PYSR_DEFAULTS, build_search_options, check_unknown_kwargs, devices_of
from ._random import host_random_trees
from ._run import hall_of_fame_entries, run_search
from ._selection import select_index
from ._strings import _check_names
from ._sympy import tree_to_latex
from ._template import TemplateExpressionSpec, TemplateMember, template_layout
from ._tree import Complexities, Tree, stack_trees
from .export import check_exportable

__all__ = ["PySRRegressor"]

_CHECKPOINT_EVERY_S = 10.0  # between checkpoints during a search (hall_of_fame.csv: every iteration)

_SYMPY_NAMES = {"E", "I", "N", "O", "Q", "S", "beta", "gamma", "zeta", "lambda", "pi", "re", "im",
                "sin", "cos", "exp", "log", "sqrt", "ln"}


def _as_dense(X):
    """Array-likes to a dense float array with sklearn's checks and messages (sparse,
    complex, empty, 1-D input); NaN/inf are left to `check_data`'s clearer message."""
    from sklearn.utils.validation import check_array

    if isinstance(X, np.ndarray) and X.dtype.kind not in "OUSc":
        return X  # numeric arrays: `check_data` checks them and keeps their dtype
    return check_array(X, accept_sparse=False, dtype=[np.float64, np.float32],
                       ensure_all_finite=False, ensure_min_samples=1, ensure_min_features=1)


def _mib(n):
    return "memory unknown" if n is None else f"~{n / 2**20:,.1f} MiB"


def _read_csv(path):
    from ._equations import read_hall_of_fame_csv

    return read_hall_of_fame_csv(path)


def _picklable_mapping(fn):
    import pickle

    import sympy

    try:
        pickle.dumps(fn)
        return fn
    except Exception:  # noqa: BLE001 - a lambda or closure: rebuild it as a sympy.Lambda
        n = len(inspect.signature(fn).parameters)
        args = sympy.symbols(f"_a0:{n}")
        return sympy.Lambda(args, fn(*args))


def _signature_init(cls):
    """Give `__init__` PySR's explicit keyword-only signature (sklearn's `get_params` reads it)."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
               for k, v in PYSR_DEFAULTS.items()]
    cls.__init__.__signature__ = inspect.Signature(params)
    return cls


@_signature_init
class PySRRegressor(RegressorMixin, BaseEstimator):
    """Symbolic regression with PySR's API: `from symjax_sr import PySRRegressor`.

    Every parameter keeps PySR's name, meaning and default (see `symjax_sr._params`),
    except `optimizer_algorithm="LM"` (Levenberg-Marquardt, measured faster and more
    accurate than BFGS here) and the extra `evaluator` ("auto" times the kernels once
    on the real shapes at the start of `fit`; with `deterministic=True` it picks by backend
    instead, because a timed pick can change with the machine's load and the two
    kernels round differently), and the extra `optimize_newborn_every`,
    `optimize_newborn_probability` and `optimize_newborn_iterations` (off by default, as
    PySR: fit the constants of a share of the children of every chunk of cycles; see
    `ConstantOptions`). Parameters are stored verbatim and validated in `fit`.

    ```python
    model = PySRRegressor(binary_operators=["+", "*"], unary_operators=["cos"], niterations=20)
    model.fit(X, y)
    print(model)
    model.predict(X)
    ```
    """

    def __init__(self, **kwargs):
        unknown = {k: v for k, v in kwargs.items() if k not in PYSR_DEFAULTS}
        check_unknown_kwargs(unknown)
        for name, default in PYSR_DEFAULTS.items():
            setattr(self, name, kwargs.get(name, default))

    @classmethod
    def from_config(cls, name_or_path: str, **overrides) -> PySRRegressor:
        """A regressor from a preset in `configs/` (`"quick"`, `"pysr_default"`, ...) or a
        TOML file, with keyword `overrides` on top. Unknown keys raise `TypeError`."""
        from ._config import load_config

        return cls(**{**load_config(name_or_path), **overrides})

    @classmethod
    def from_file(cls, run_directory: str, *, binary_operators=None, unary_operators=None,
                  extra_sympy_mappings=None, variable_names=None, n_features_in=None,
                  **params) -> PySRRegressor:
        """A fitted model from a run directory: ours or a PySR run's.

        With our `checkpoint.pkl` the whole estimator comes back, search state included
        (so `warm_start=True` continues the search); keyword `params` are then set on it.
        Otherwise the equations are read from `hall_of_fame.csv` (a PySR run directory
        holds equations only): the operators are inferred from them unless given, and the
        variables are `x0, x1, ...` (as many as `n_features_in`, else as the equations
        use) unless `variable_names` says otherwise; `warm_start` then starts afresh.
        """
        import os
        import pickle
        import re

        from ._operators import make_operator_set
        from ._strings import infer_operator_set

        checkpoint = os.path.join(run_directory, "checkpoint.pkl")
        if os.path.exists(checkpoint):
            with open(checkpoint, "rb") as f:
                model = pickle.load(f)
            if not isinstance(model, cls):
                raise TypeError(f"{checkpoint} holds a {type(model).__name__}, not a {cls.__name__}.")
            if extra_sympy_mappings is not None:
                params["extra_sympy_mappings"] = extra_sympy_mappings
            return model.set_params(**params)
        path = os.path.join(run_directory, "hall_of_fame.csv")
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"No checkpoint.pkl or hall_of_fame.csv in {run_directory!r}; pass the run directory."
            )
        equations = [str(e) for e in _read_csv(path)["equation"]]
        if binary_operators is None and unary_operators is None:
            ops = infer_operator_set(equations)
        else:
            ops = make_operator_set(binary_operators or [], unary_operators or [], extra_sympy_mappings)
        if variable_names is None:
            idx = [int(m) for e in equations for m in re.findall(r"\bx(\d+)\b", e)]
            n = n_features_in if n_features_in is not None else max(idx, default=0) + 1
            variable_names = [f"x{i}" for i in range(n)]
        names = [str(v) for v in variable_names]
        model = cls(binary_operators=binary_operators, unary_operators=unary_operators,
                    extra_sympy_mappings=extra_sympy_mappings, **params)
        model.operators_ = ops
        model.n_features_in_ = len(names)
        model.feature_names_in_ = np.array(names, dtype=object)
        model.nout_ = 1
        model.equations_list_ = [read_hall_of_fame(run_directory, ops, names, model.loss_scale)]
        model.run_id_ = os.path.basename(os.path.normpath(run_directory))
        model.output_directory_ = os.path.dirname(os.path.normpath(run_directory))
        return model

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # one search per output column
        tags.regressor_tags.poor_score = True  # a formula search need not fit arbitrary data
        tags.non_deterministic = False
        return tags

    def __getstate__(self):
        # The user's `extra_sympy_mappings` are usually lambdas, which pickle cannot
        # store: keep them as `sympy.Lambda`s, which compute the same and pickle.
        state = dict(self.__dict__)
        if state.get("extra_sympy_mappings"):
            state["extra_sympy_mappings"] = {
                k: _picklable_mapping(v) for k, v in state["extra_sympy_mappings"].items()
            }
        return state

    def get_params(self, deep: bool = True):
        return {name: getattr(self, name) for name in PYSR_DEFAULTS}

    def set_params(self, **params):
        check_unknown_kwargs({k: v for k, v in params.items() if k not in PYSR_DEFAULTS})
        for k, v in params.items():
            setattr(self, k, v)
        return self

    # ------------------------------------------------------------------------------ fit

    def _validate_xy(self, X, y, variable_names):
        if y is None:
            raise ValueError("PySRRegressor requires y to be passed, but the target y is None.")
        names = None
        if isinstance(X, pd.DataFrame) and all(isinstance(c, str) for c in X.columns):
            names = [str(c) for c in X.columns]  # as sklearn: only all-string columns name features
        X = check_data(_as_dense(X))
        if variable_names is not None:
            names = [str(v) for v in variable_names]
        if names is not None:
            if len(names) != X.shape[1]:
                raise ValueError(f"`variable_names` has {len(names)} names for {X.shape[1]} features.")
            _check_names(names)  # identifiers, unique
            bad = [n for n in names if n in _SYMPY_NAMES or n in OPERATORS]
            if bad:
                raise ValueError(
                    f"Variable names {bad} clash with SymPy or operator names; rename them "
                    "(e.g. 'x_' + name)."
                )
        y_names = None
        if isinstance(y, pd.DataFrame):
            y_names = [str(c) for c in y.columns]
            y = y.to_numpy()
        elif isinstance(y, pd.Series):
            y = y.to_numpy()
        y = np.asarray(y)
        if y.dtype == object or not np.issubdtype(y.dtype, np.number):
            raise TypeError(f"Unknown label type: `y` must hold numbers, got dtype {y.dtype}; "
                            "a regressor needs numeric targets.")
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"`y` must be [rows] or [rows, outputs] with {X.shape[0]} rows, got shape {y.shape}."
            )
        if not np.all(np.isfinite(y)):
            raise ValueError("`y` contains NaN or inf; drop those rows before fitting.")
        const_cols = [i for i in range(X.shape[1]) if X.shape[0] > 1 and np.all(X[:, i] == X[0, i])]
        if const_cols and self.verbosity > 0:
            print(f"Note: feature(s) {const_cols} are constant in X.", file=sys.stderr)
        return X, y, names, y_names

    @staticmethod
    def _units(X_units, y_units, n_features: int, nout: int):
        """PySR's `X_units` / `y_units` as dimension arrays (`_units.py`), or None without units.
        `y_units` is one unit, or one per output."""
        if X_units is None and y_units is None:
            return None
        from ._units import feature_dims, parse_unit

        if isinstance(y_units, (list, tuple)):
            if len(y_units) != nout:
                raise ValueError(f"`y_units` lists {len(y_units)} units for {nout} output(s); give "
                                 "one unit, or one per output.")
            y_dims = [parse_unit(u) for u in y_units]
        else:
            y_dims = [None if y_units is None else parse_unit(y_units)] * nout
        return feature_dims(X_units, n_features), y_dims

    def fit(self, X, y, *, weights=None, variable_names=None, Xresampled=None,
            complexity_of_variables=None, X_units=None, y_units=None, category=None):
        """Search for equations `y ≈ f(X)`; one search per output column of `y`.

        With `expression_spec=ParametricExpressionSpec(...)`, `category` (one integer
        label per row) says which row belongs to which category's parameter values; a
        `TemplateExpressionSpec` passes the category codes to its `combine` as `category`."""
        X, y, names, y_names = self._validate_xy(X, y, variable_names)
        codes, classes = self._category(category, X.shape[0], names, X_units=X_units,
                                        y_units=y_units, Xresampled=Xresampled)
        units = self._units(X_units, y_units, X.shape[1], 1 if y.ndim == 1 else y.shape[1])
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape[0] != X.shape[0] or not np.all(np.isfinite(weights)) or np.any(weights < 0):
                raise ValueError("`weights` must be finite, non-negative, one per row of X.")
        Y = y.reshape(len(y), -1)
        mask = self._selection(X, Y, names)
        Xs, Ys = X[:, mask], Y
        if Xresampled is not None:
            if not self.denoise:
                raise ValueError("`Xresampled` is only used with `denoise=True`; set it or drop Xresampled.")
            if weights is not None:
                raise ValueError("`weights` are per row of X, but with `Xresampled` the search runs on "
                                 "other rows; drop one of them.")
            Xresampled = check_data(_as_dense(Xresampled), name="Xresampled")
            if Xresampled.shape[1] != X.shape[1]:
                raise ValueError(f"`Xresampled` has {Xresampled.shape[1]} features; X has {X.shape[1]}.")
            Xresampled = Xresampled[:, mask]
        if self.denoise:
            from ._preprocess import denoise

            Xs, Ys = denoise(Xs, Y, Xresampled, self.random_state)
        if complexity_of_variables is not None and np.ndim(complexity_of_variables) == 1:
            if len(complexity_of_variables) != X.shape[1]:
                raise ValueError(f"`complexity_of_variables` needs one value per feature ({X.shape[1]}), "
                                 f"got {len(complexity_of_variables)}.")
            complexity_of_variables = list(np.asarray(complexity_of_variables)[mask])
        params = self.get_params()
        template = None
        if isinstance(self.expression_spec, TemplateExpressionSpec):
            template = template_layout(self.expression_spec,
                                       names or [f"x{i}" for i in range(X.shape[1])],
                                       0 if classes is None else len(classes))
        opts, dtype = build_search_options(params, Xs.shape[1], complexity_of_variables,
                                           n_categories=0 if classes is None else len(classes),
                                           template=template)
        check_exportable(opts.operators)  # a broken custom mapping fails now, not after the search
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.array(names if names else [f"x{i}" for i in range(X.shape[1])],
                                          dtype=object)
        self.nout_ = 1 if y.ndim == 1 else y.shape[1]
        self.y_names_ = y_names
        warm = self.warm_start and hasattr(self, "search_states_")
        if warm and not np.array_equal(self._mask(), mask):
            raise ValueError("`warm_start=True` needs the same selected features as the previous "
                             "fit (`select_k_features` chose others); refit with warm_start=False.")
        self.selection_mask_ = mask if self.select_k_features is not None else None
        self.X_units_, self.y_units_ = X_units, y_units
        X, Y = Xs, Ys
        if warm:
            before = getattr(self, "categories_", None)
            if (before is None) != (classes is None) or (
                    classes is not None and not np.array_equal(before, classes)):
                raise ValueError("`warm_start=True` needs the same category labels as the previous "
                                 "fit (the parameters are per label); refit with warm_start=False.")
            if getattr(self, "search_options_", None) != opts:
                raise ValueError(
                    "`warm_start=True` needs the same search options as the previous fit "
                    "(operators, maxsize, populations...); refit with warm_start=False."
                )
            states = self.search_states_
        else:
            states = [None] * self.nout_
        self.categories_ = classes
        self.search_options_ = opts
        seeds = self._guesses(opts, dtype)
        self._checkpoint_warned = False
        self.operators_ = opts.operators
        if self.temp_equation_file:
            import tempfile

            self.output_directory_ = tempfile.mkdtemp(prefix="symjax_sr_", dir=self.tempdir)
        else:
            self.output_directory_ = self.output_directory or "outputs"
        self.run_id_ = self.run_id or time.strftime("%Y%m%d_%H%M%S_") + f"{np.random.randint(16**6):06x}"
        ctx = jax.enable_x64(True) if dtype == np.float64 else contextlib.nullcontext()
        self.search_states_, self.equations_list_, self.fit_info_ = [], [], []
        logger = None
        if self.logger_spec is not None:
            logger = self.logger_spec.create_logger()
            self.logger_spec.write_hparams(logger, self.get_params())
        try:
            self._run_searches(ctx, dtype, opts, X, Y, weights, states, seeds, units, mask, logger,
                               codes)
        finally:
            if logger is not None:
                self.logger_spec.close(logger)
        self._write_files()
        if self.temp_equation_file and self.delete_tempfiles:
            import shutil

            shutil.rmtree(self.output_directory_, ignore_errors=True)
        return self

    def _run_searches(self, ctx, dtype, opts, X, Y, weights, states, seeds, units, mask, logger,
                      codes=None) -> None:
        """One search per output column of `Y`; results go to `search_states_`,
        `equations_list_`, `fit_info_` and the checkpoint."""
        with ctx:
            jdtype = jnp.float64 if dtype == np.float64 else jnp.float32
            # `procs` host devices exist only if made before JAX starts, which choosing the
            # evaluator does
            devices = device_list(devices_of(self.get_params()))
            evaluator = self._choose_evaluator(opts, X, Y[:, 0], jdtype)
            for j in range(self.nout_):
                bar = self._progress_bar(j)
                result = run_search(
                    X, Y[:, j], opts, weights=weights, niterations=int(self.niterations),
                    random_state=self.random_state, timeout_in_seconds=self.timeout_in_seconds,
                    max_evals=self.max_evals, early_stop_condition=self.early_stop_condition,
                    evaluator=evaluator, callback=self._callback(j, bar, logger), state=states[j],
                    dtype=jdtype, seeds=seeds[j],
                    units=None if units is None else (units[0][mask], units[1][j]),
                    category=codes, devices=devices,
                )
                if bar is not None:
                    bar.close()
                self.search_states_.append(result.state)
                self.equations_list_.append(self._table(result.hall_of_fame))
                self.fit_info_.append({
                    "iterations": result.iterations, "num_evals": result.num_evals,
                    "wall_s": result.wall_s, "compile_s": result.compile_s,
                    "stopped_because": result.stopped_because, "evaluator": evaluator,
                    "memory_mb": None if result.memory_bytes is None else result.memory_bytes / 2**20,
                    "loss_floor": result.loss_floor,
                })
                self._write_checkpoint(self.search_states_)
                if self.verbosity > 0:
                    print(f"[output {j}] {result.iterations} iterations, {result.num_evals:.3g} "
                          f"evaluations in {result.wall_s:.1f} s (compile {result.compile_s:.1f} s, "
                          f"{result.num_evals / max(result.wall_s, 1e-9):.3g} evals/s, "
                          f"{_mib(result.memory_bytes)} per iteration); "
                          f"stopped: {result.stopped_because}.", file=sys.stderr)

    def _guesses(self, opts, dtype) -> list:
        """PySR's `guesses` as one stacked population per output (or None): strings in the
        feature names, or SymPy expressions; a flat list serves every output."""
        if self.guesses is None:
            return [None] * self.nout_
        guesses = list(self.guesses) if not isinstance(self.guesses, str) else [self.guesses]
        nested = bool(guesses) and all(isinstance(g, (list, tuple)) for g in guesses)
        if nested and len(guesses) != self.nout_:
            raise ValueError(f"`guesses` holds {len(guesses)} lists but y has {self.nout_} outputs; "
                             "give one list per output, or one flat list for all of them.")
        per_output = [list(g) for g in guesses] if nested else [guesses] * self.nout_
        names = self._search_names()
        out = []
        for gs in per_output:
            if len(gs) > opts.population_size:
                raise ValueError(f"{len(gs)} guesses for one output, more than `population_size` "
                                 f"({opts.population_size}); drop some or raise population_size.")
            trees = [self._guess_tree(g, opts, names) for g in gs]
            out.append(stack_trees(trees, opts.length, opts.const_slots, dtype) if trees else None)
        return out

    def _guess_tree(self, guess, opts, names) -> Tree:
        from ._strings import parse_expression
        from ._sympy import sympy_to_tree

        try:
            if isinstance(guess, str):
                tree = parse_expression(guess, opts.operators, names)
            else:
                tree = sympy_to_tree(guess, opts.operators, names)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"guess {guess!r} cannot be read over the operators and the features "
                             f"the search sees ({', '.join(names)}): {e}") from None
        if opts.complexity_mapping is not None:
            from ._complexity import mapped_complexity

            pop = stack_trees([tree], max(opts.length, tree.size), max(1, len(tree.constants)))
            size = float(mapped_complexity(opts.complexity_mapping, pop.op, pop.arg, opts.operators)[0])
        else:
            size = round(Complexities(*opts.complexities).of_tree(tree)) if opts.complexities else tree.size
        if size > opts.maxsize or tree.size > opts.length or len(tree.constants) > opts.const_slots:
            raise ValueError(f"guess {guess!r} has complexity {size:g}, more than `maxsize` "
                             f"({opts.maxsize}); raise maxsize or simplify the guess.")
        return tree

    def _selection(self, X, Y, names) -> np.ndarray:
        """The features the search sees: PySR's `select_k_features`, or all of them."""
        k = self.select_k_features
        if k is None:
            return np.ones(X.shape[1], bool)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= X.shape[1]:
            raise ValueError(f"`select_k_features` must be an integer in 1..{X.shape[1]} (the number "
                             f"of features), got {k!r}.")
        from ._preprocess import select_features

        mask = select_features(X, Y, int(k), self.random_state)
        if self.verbosity > 0:
            all_names = names if names else [f"x{i}" for i in range(X.shape[1])]
            kept = ", ".join(str(n) for n, m in zip(all_names, mask) if m)
            print(f"select_k_features: searching over {kept}", file=sys.stderr)
        return mask

    def _mask(self) -> np.ndarray:
        mask = getattr(self, "selection_mask_", None)
        return np.ones(self.n_features_in_, bool) if mask is None else np.asarray(mask, bool)

    def _search_names(self) -> list[str]:
        """Names of the variables the search sees (trees in `search_states_` index these):
        the selected features, then a parametric expression's parameters."""
        return list(np.asarray(self.feature_names_in_)[self._mask()]) + self._param_names()

    def _names(self) -> list[str]:
        """Names of the variables of the equations in `equations_`: every input feature,
        then a parametric expression's parameters."""
        return list(self.feature_names_in_) + self._param_names()

    def _param_names(self) -> list[str]:
        opts = getattr(self, "search_options_", None)
        return [] if opts is None else parameter_names(getattr(opts, "n_params", 0))

    def _category(self, category, n_rows, names, **exclusive):
        """Category codes and labels for a parametric fit (None, None otherwise), with the
        options a parametric fit does not support refused."""
        spec = check_expression_spec(self.expression_spec)
        if spec is None:
            if category is not None:
                raise ValueError("`category` is only used with `expression_spec=ParametricExpressionSpec(...)` "
                                 "or a TemplateExpressionSpec; set one or drop category.")
            return None, None
        refused = dict(exclusive, guesses=self.guesses, denoise=self.denoise or None,
                       loss_function_expression=self.loss_function_expression)
        if isinstance(spec, TemplateExpressionSpec):
            refused.update(select_k_features=self.select_k_features,
                           output_torch_format=self.output_torch_format or None)
        for name, value in refused.items():
            if value is not None:
                raise ValueError(f"`{name}` is not supported with {type(spec).__name__} yet; "
                                 f"drop {name} or use a plain expression.")
        if isinstance(spec, TemplateExpressionSpec):
            return (None, None) if category is None else encode_category(category, n_rows)
        if category is None:
            raise ValueError("`expression_spec=ParametricExpressionSpec(...)` needs `category` in fit: "
                             "one integer label per row, e.g. `model.fit(X, y, category=c)`.")
        clash = set(parameter_names(spec.max_parameters)) & set(names or [])
        if clash:
            raise ValueError(f"Feature name(s) {sorted(clash)} are the names of the parameters; "
                             "rename those features.")
        return encode_category(category, n_rows)

    def _to_input_features(self, entries):
        """Hall-of-fame entries with their trees indexing the columns of the full `X`."""
        idx = np.flatnonzero(self._mask())
        if len(idx) == self.n_features_in_:
            return entries
        # a parametric expression's parameters follow the features, in both numberings
        idx = np.concatenate([idx, self.n_features_in_ + np.arange(len(self._param_names()))])
        out = []
        for e in entries:
            t = e.tree
            arg = np.where(t.op == VAR, idx[np.clip(t.arg, 0, len(idx) - 1)], t.arg).astype(t.arg.dtype)
            out.append(dataclasses.replace(e, tree=Tree(t.op, arg, t.value)))
        return out

    def _choose_evaluator(self, opts, X, y, dtype):
        if self.evaluator != "auto":
            return self.evaluator
        if opts.template is not None:  # sub-trees are evaluated one member at a time (vmap)
            if self.verbosity > 0:
                print("evaluator: reference (template expressions)", file=sys.stderr)
            return "reference"
        if self.deterministic:  # a timed pick depends on the machine's load
            name = untimed_evaluator()
            if self.verbosity > 0:
                print(f"evaluator: {name} (untimed: deterministic=True)", file=sys.stderr)
            return name
        trees = host_random_trees(0, 256, opts.operators, opts.n_features, opts.maxsize,
                                  opts.const_slots)
        pop = stack_trees(trees, opts.length, opts.const_slots, dtype)
        name, timings = choose_evaluator(opts.operators, pop, jnp.asarray(X.T, dtype), jnp.asarray(y, dtype))
        if self.verbosity > 0:
            shown = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in timings.items())
            print(f"evaluator: {name} ({shown} per 256 expressions)", file=sys.stderr)
        return name

    def _callback(self, j, bar, logger=None):
        last = {"checkpoint": time.monotonic()}

        def cb(state, info):
            if logger is not None and info["iteration"] % self.logger_spec.log_interval == 0:
                self._log_iteration(logger, j, info)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"best loss {info['best_loss']:.4g}, "
                                    f"{info['evals_per_s']:.3g} evals/s", refresh=False)
            self._write_hof_now(j, info["hall_of_fame"])
            # The checkpoint pickles the whole search state: at most every
            # `_CHECKPOINT_EVERY_S` seconds, and always when an output's search ends.
            if time.monotonic() - last["checkpoint"] >= _CHECKPOINT_EVERY_S:
                last["checkpoint"] = time.monotonic()
                self._write_checkpoint(self.search_states_ + [state])

        return cb

    def _log_iteration(self, logger, j, info) -> None:
        from ._logging import iteration_record

        names = self._search_names()
        scalars, text = iteration_record(
            info["hall_of_fame"], info, self.search_options_.maxsize,
            "" if self.nout_ == 1 else f"output_{j}/", int(self.print_precision),
            lambda t: equation_string(t, self.operators_, names, self._layout(), self.print_precision))
        self.logger_spec.log_iteration(logger, int(info["iteration"]), scalars, text)

    def _progress_bar(self, j):
        """A tqdm bar on a terminal when `progress=True` and `verbosity > 0`; else None."""
        if not (self.progress and self.verbosity > 0 and sys.stdout.isatty()):
            return None
        from tqdm.auto import tqdm

        label = "search" if self.nout_ == 1 else f"output {j}"
        return tqdm(total=int(self.niterations), desc=label, unit="it", leave=True)

    def _write_checkpoint(self, states):
        """`checkpoint.pkl` in the run directory: this estimator, search state included.

        Written atomically (temporary file, then rename), so an interrupted write leaves
        the previous checkpoint intact. Outputs whose search is still running are stored
        as state only; loading rebuilds their equations from it (`__setstate__`).
        """
        import os
        import pickle

        state = self.__getstate__()
        state["search_states_"] = [jax.device_get(s) for s in states]
        state["equations_list_"] = list(self.equations_list_)
        path = os.path.join(self.output_directory_, self.run_id_, "checkpoint.pkl")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        snapshot = object.__new__(type(self))
        snapshot.__dict__.update(state)
        try:
            data = pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            if not getattr(self, "_checkpoint_warned", False):
                self._checkpoint_warned = True
                warnings.warn(
                    f"checkpoint.pkl is not written: a parameter cannot be pickled ({e}). "
                    "Define callables (losses, early_stop_condition, operators) at module level. "
                    "hall_of_fame.csv is still written.", UserWarning, stacklevel=2,
                )
            return None
        atomic_write(path, data)
        return path

    def __setstate__(self, state):
        self.__dict__.update(state)
        states = state.get("search_states_") or []
        tables = state.get("equations_list_")
        if tables is not None and len(tables) < len(states):
            self.equations_list_ = list(tables) + [
                self._table(hall_of_fame_entries(s, self.search_options_))
                for s in states[len(tables):]
            ]

    def refresh(self, run_directory: str | None = None):
        """Re-read the equations from `hall_of_fame.csv` of the run directory (PySR's `refresh`).

        Use it while another process is still searching into that directory.
        """
        import os

        self._check_fitted()
        if self._layout() is not None:
            raise ValueError("hall_of_fame.csv cannot be read back into template expressions; "
                             "load checkpoint.pkl with `PySRRegressor.from_file(run_directory)`.")
        if getattr(self, "categories_", None) is not None:
            raise ValueError("hall_of_fame.csv holds no parameter values, so a parametric model "
                             "cannot be refreshed from it; load checkpoint.pkl with "
                             "`PySRRegressor.from_file(run_directory)`.")
        base = run_directory or os.path.join(self.output_directory_, self.run_id_)
        dirs = [base] if self.nout_ == 1 else [os.path.join(base, f"output{j + 1}")
                                                for j in range(self.nout_)]
        self.equations_list_ = [
            read_hall_of_fame(d, self.operators_, self._names(), self.loss_scale)
            for d in dirs
        ]
        return self

    # -------------------------------------------------------------------------- results

    def _layout(self):
        """The `TemplateLayout` of a template fit, else None."""
        return getattr(getattr(self, "search_options_", None), "template", None)

    def _table(self, entries) -> pd.DataFrame:
        return equations_table(self._to_input_features(entries), self.operators_,
                               self._names(), self.loss_scale, getattr(self, "categories_", None),
                               self._layout())

    @property
    def equations_(self):
        """PySR's equations table (a list of tables for multi-output fits)."""
        self._check_fitted()
        tables = []
        for j, t in enumerate(self.equations_list_):
            t = t.copy()
            if self.output_jax_format:
                t["jax_format"] = [self._jax_of(tree, t["parameters"].iloc[i] if "parameters" in t else None)
                                   for i, tree in enumerate(t["tree"])]
            if self.output_torch_format:
                from .export import to_torch

                t["torch_format"] = [
                    to_torch(tree, operators=self.operators_,
                             variable_names=self._names(),
                             extra_torch_mappings=self.extra_torch_mappings)
                    for tree in t["tree"]
                ]
            if len(t):
                t["_chosen"] = False
                t.loc[t.index[self._select(t, j)], "_chosen"] = True
            tables.append(t)
        return tables[0] if self.nout_ == 1 else tables

    def _check_fitted(self):
        if not hasattr(self, "equations_list_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("This PySRRegressor is not fitted yet; call `fit(X, y)` first.")

    def _select(self, table, j: int) -> int:
        """Row of output `j`'s table that `model_selection` picks; "best" takes the simplest
        row that fits to rounding where the fit recorded that level (`_selection.py`)."""
        info = getattr(self, "fit_info_", None) or []
        floor = info[j].get("loss_floor", 0.0) if j < len(info) else 0.0
        return select_index(table["loss"], table["score"], self.model_selection, floor)

    def _rows(self, index):
        self._check_fitted()
        out = []
        for j, table in enumerate(self.equations_list_):
            if len(table) == 0:
                raise RuntimeError(f"The search for output {j} found no finite-loss equation.")
            idx = index[j] if isinstance(index, (list, tuple)) else index
            if idx is None:
                idx = self._select(table, j)
            out.append(table.iloc[int(idx)])
        return out

    def get_best(self, index=None):
        """The chosen row (a list of rows for multi-output fits)."""
        rows = self._rows(index)
        return rows[0] if self.nout_ == 1 else rows

    def get_hof(self):
        return self.equations_

    def predict(self, X, index=None, category=None):
        """Predictions of the chosen equation(s), NaN where an operator leaves its domain;
        a parametric fit needs each row's `category` (labels seen in fit)."""
        self._check_fitted()
        X = check_data(_as_dense(X))
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but PySRRegressor is expecting "
                             f"{self.n_features_in_} features as input.")
        if getattr(self, "categories_", None) is not None:
            if category is None:
                raise ValueError("This model was fitted with categories: pass each row's "
                                 "`category`, `model.predict(X, category=c)`.")
            preds = [row["lambda_format"](X, category) for row in self._rows(index)]
        else:
            if category is not None:
                raise ValueError("`category` is only used by models fitted with one "
                                 "(ParametricExpressionSpec, or a template given category); drop it.")
            preds = [row["lambda_format"](X) for row in self._rows(index)]
        return preds[0] if self.nout_ == 1 else np.stack(preds, axis=1)

    def sympy(self, index=None):
        """The chosen equation(s) in SymPy; a template's is `{expression: SymPy}` in its
        arguments `#1 .. #a`."""
        rows = self._rows(index)
        return rows[0]["sympy_format"] if self.nout_ == 1 else [r["sympy_format"] for r in rows]

    def latex(self, index=None, precision: int = 3):
        rows = self._rows(index)
        if self._layout() is not None:
            out = [r["tree"].to_latex(self.operators_, self._layout(), precision) for r in rows]
            return out[0] if self.nout_ == 1 else out
        out = [tree_to_latex(r["tree"], self.operators_, self._names(), precision)
               for r in rows]
        return out[0] if self.nout_ == 1 else out

    def latex_table(self, indices=None, precision: int = 3,
                    columns=("equation", "complexity", "loss", "score")):
        """A booktabs LaTeX table of the equations (PySR's `latex_table`)."""
        self._check_fitted()
        from ._equations import latex_table

        if self._layout() is not None:
            raise NotImplementedError("latex_table() of template expressions is not available; "
                                      "latex() gives each sub-expression's LaTeX.")
        return latex_table(self.equations_list_, self.operators_, self._names(),
                           indices, precision, columns)

    def jax(self, index=None):
        """PySR's contract: `{"callable": f, "parameters": p}` with `f(X, p)` differentiable."""
        rows = self._rows(index)
        out = [self._jax_of(r["tree"], r.get("parameters")) for r in rows]
        return out[0] if self.nout_ == 1 else out

    def _jax_of(self, tree, params=None):
        """`jax()` of one equation; a parametric one's callable is `f(X, p, category)`
        with `category` the column index into `categories_`."""
        from ._equations import jax_callable, parametric_jax_callable

        if isinstance(tree, TemplateMember):
            return tree.jax(self.operators_, self._layout())
        if getattr(self, "categories_", None) is not None:
            return parametric_jax_callable(tree, self.operators_, params)
        return jax_callable(tree, self.operators_)

    def equinox(self, index=None):
        """The chosen equation(s) as an `eqx.Module` with trainable constants, callable on
        `X [N, n_features]` (one module stacking every output for multi-output fits; a
        template's is a `TemplateEquinoxExpression`, one per output)."""
        from .export import ParametricEquinoxExpression, stack_equinox, to_equinox

        if self._layout() is not None:
            from .export import template_to_equinox

            mods = [template_to_equinox(r["tree"], self.operators_, self._layout())
                    for r in self._rows(index)]
            return mods[0] if self.nout_ == 1 else mods
        rows = self._rows(index)
        trees = [r["tree"] for r in rows]
        names = self._names()
        if getattr(self, "categories_", None) is not None:
            mods = [ParametricEquinoxExpression(
                to_equinox(r["tree"], operators=self.operators_, variable_names=names),
                jnp.asarray(r["parameters"])) for r in rows]
            return mods[0] if self.nout_ == 1 else mods
        if self.nout_ == 1:
            return to_equinox(trees[0], operators=self.operators_, variable_names=names)
        return stack_equinox(trees, operators=self.operators_, variable_names=names)

    def pytorch(self, index=None):
        """The chosen equation(s) as `torch.nn.Module`s with trainable constants (PySR's
        `pytorch()`: a list for multi-output fits). Needs `pip install symjax_sr[torch]`."""
        from .export import to_torch

        if self._layout() is not None:
            raise NotImplementedError("pytorch() of a template model is not available; use jax().")
        if getattr(self, "categories_", None) is not None:
            raise NotImplementedError("pytorch() of a parametric model is not available; use "
                                      "jax() or equinox(), which take the category.")
        out = [to_torch(r["tree"], operators=self.operators_,
                        variable_names=self._names(),
                        extra_torch_mappings=self.extra_torch_mappings)
               for r in self._rows(index)]
        return out[0] if self.nout_ == 1 else out

    def _write_hof_now(self, j, entries):
        rows = front_rows(entries, self.operators_, self._search_names(), self._layout())
        write_hall_of_fame(self._run_dir(j), rows)

    def _run_dir(self, j):
        import os

        base = os.path.join(self.output_directory_, self.run_id_)
        return base if self.nout_ == 1 else os.path.join(base, f"output{j + 1}")

    def _write_files(self):
        for j, table in enumerate(self.equations_list_):
            write_hall_of_fame(self._run_dir(j), table)

    def __repr__(self):
        if not hasattr(self, "equations_list_"):
            return "PySRRegressor(unfitted)"
        eq = self.equations_
        tables = eq if isinstance(eq, list) else [eq]
        lines = ["PySRRegressor.equations_ = ["]
        for j, t in enumerate(tables):
            if self.nout_ > 1:
                lines.append(f"  output {j}:")
            cols = t[["complexity", "loss", "score"]].copy()
            # `print_precision` significant digits on screen; the table and files keep every digit
            names = self._names()
            cols["equation"] = [equation_string(tree, self.operators_, names, self._layout(),
                                                self.print_precision) for tree in t["tree"]]
            cols.insert(0, "pick", np.where(t["_chosen"], ">>>>", ""))
            lines.append(cols.to_string(index=False))
        lines.append("]")
        return "\n".join(lines)

"""`EQLRegressor`: equation-learner networks behind the same outputs as `PySRRegressor`.

`fit` validates the data, maps the parameters to `EQLOptions`, trains `n_trials`
networks (restarting a trial that diverges), extracts each at a ladder of thresholds
(`threshold · 1, 3, 10, 30, 100`) and keeps the Pareto front of complexity vs. loss as
PySR's equations table: the formulas go through `sympy_to_tree`, so `predict`, `sympy`,
`latex`, `latex_table` and `jax` are those of the genetic search.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from .._equations import equations_table
from .._evaluate import check_data
from .._numpy_eval import evaluate_tree_numpy
from .._operators import make_operator_set
from .._run import HofEntry
from .._selection import MODEL_SELECTIONS, select_index
from .._strings import _check_names
from .._sympy import sympy_to_tree, tree_to_latex
from ._extract import eql_to_sympy, simplify_expression
from ._layers import DEFAULT_UNITS
from ._options import EQLOptions, training_setup
from ._train import train

__all__ = ["EQLRegressor"]

_LADDER = (1.0, 3.0, 10.0, 30.0, 100.0)


class EQLRegressor(RegressorMixin, BaseEstimator):
    """Symbolic regression with an equation-learner network (EQL / EQL÷ / SEQL).

    **Arguments** (stored verbatim, validated in `fit`):

    - `units`: hidden units per layer (`identity`, `sin`, `cos`, `exp`, `sigmoid`,
      `square`, `constant`, `product`, `division`, or a unary registry operator).
    - `hidden_layers`: depth. `division`: EQL÷'s division output layer.
    - `regulariser`: `"l1"`, `"l12"` (smoothed L0.5) or `"l0"` (hard-concrete gates);
      `regularisation_strength`: its λ during the regularised phase.
    - `warmup_steps`, `regularised_steps`, `finetune_steps`: the three phases;
      `learning_rate`: Adam's step size.
    - `threshold`: weights below it are masked for fine-tuning and dropped at extraction.
    - `round_digits`: decimals the extracted constants are rounded to.
    - `n_trials`: networks trained (from different keys); `max_restarts`: restarts of a
      diverged trial.
    - `division_threshold`, `exp_clip`, `init_scale`: see `EQLLayer`.
    - `model_selection`, `loss_scale`: as `PySRRegressor`. `random_state`: int seed.

    ```python
    model = EQLRegressor(hidden_layers=1).fit(X, y)
    model.sympy(), model.predict(X)
    ```
    """

    def __init__(self, *, units: Sequence[str] = DEFAULT_UNITS, hidden_layers: int = 2,
                 division: bool = False, regulariser: str = "l12",
                 regularisation_strength: float = 1e-3, learning_rate: float = 1e-2,
                 warmup_steps: int = 1000, regularised_steps: int = 4000,
                 finetune_steps: int = 1000, threshold: float = 0.01, round_digits: int = 3,
                 n_trials: int = 1, max_restarts: int = 5, division_threshold: float = 1e-3,
                 exp_clip: float = 10.0, init_scale: float = 1.0, model_selection: str = "best",
                 loss_scale: str = "log", random_state: int | None = None):
        self.units = units
        self.hidden_layers = hidden_layers
        self.division = division
        self.regulariser = regulariser
        self.regularisation_strength = regularisation_strength
        self.learning_rate = learning_rate
        self.warmup_steps = warmup_steps
        self.regularised_steps = regularised_steps
        self.finetune_steps = finetune_steps
        self.threshold = threshold
        self.round_digits = round_digits
        self.n_trials = n_trials
        self.max_restarts = max_restarts
        self.division_threshold = division_threshold
        self.exp_clip = exp_clip
        self.init_scale = init_scale
        self.model_selection = model_selection
        self.loss_scale = loss_scale
        self.random_state = random_state

    # ------------------------------------------------------------------------------ fit

    def _options(self) -> EQLOptions:
        params = self.get_params()
        for name, valid in (("model_selection", MODEL_SELECTIONS), ("loss_scale", ("log", "linear"))):
            if params[name] not in valid:
                raise ValueError(f"Unknown `{name}` {params[name]!r}; valid: {', '.join(valid)}.")
        del params["model_selection"], params["loss_scale"], params["random_state"]
        params["units"] = tuple(params["units"]) if not isinstance(params["units"], str) else params["units"]
        return EQLOptions(**params)

    def fit(self, X, y, *, variable_names: Sequence[str] | None = None):
        """Train EQL networks on `y ≈ f(X)` and extract their equations."""
        opts = self._options()
        names = None
        if isinstance(X, pd.DataFrame):
            names = [str(c) for c in X.columns]
            X = X.to_numpy()
        X = check_data(X).astype(np.float64)
        names = _check_names(variable_names if variable_names is not None else names)
        if names is not None and len(names) != X.shape[1]:
            raise ValueError(f"`variable_names` has {len(names)} names for {X.shape[1]} features.")
        y = np.asarray(y, dtype=np.float64)
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"`y` must be [rows] or [rows, outputs] with {X.shape[0]} rows, got shape {y.shape}."
            )
        if not np.all(np.isfinite(y)):
            raise ValueError("`y` contains NaN or inf; drop those rows before fitting.")
        Y = y.reshape(len(y), -1)
        self.options_ = opts
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.array(names or [f"x{i}" for i in range(X.shape[1])], dtype=object)
        self.nout_ = 1 if y.ndim == 1 else Y.shape[1]
        self.operators_ = make_operator_set(*opts.operators)
        networks, losses, info = self._train(opts, X, Y)
        if not networks:
            raise RuntimeError(
                f"All {opts.n_trials} EQL trial(s) diverged after {opts.max_restarts} restarts each; "
                "lower `learning_rate` or `init_scale`."
            )
        self.network_ = networks[int(np.argmin(losses))]
        self.fit_info_ = info
        self.equations_list_ = [self._front(networks, X, Y[:, j], j) for j in range(Y.shape[1])]
        return self

    def _train(self, opts: EQLOptions, X, Y):
        optimizer, schedule, regulariser = training_setup(opts)
        seed = 0 if self.random_state is None else int(self.random_state)
        key = jax.random.key(seed)
        Xj, Yj = jnp.asarray(X, jnp.float32), jnp.asarray(Y, jnp.float32)
        networks, losses, info = [], [], {"trial_seconds": [], "restarts": [], "diverged": 0}
        for _ in range(opts.n_trials):
            t0, restarts = time.perf_counter(), 0
            for _attempt in range(opts.max_restarts + 1):
                key, k_init, k_train = jax.random.split(key, 3)
                net = opts.network(X.shape[1], Y.shape[1], k_init)
                res = train(net, Xj, Yj, optimizer=optimizer, regularisation=schedule,
                            regulariser=regulariser, steps=opts.phases.total_steps, key=k_train)
                if not res.diverged:
                    networks.append(res.model)
                    losses.append(res.loss)
                    break
                restarts += 1
            else:
                info["diverged"] += 1
            info["trial_seconds"].append(time.perf_counter() - t0)
            info["restarts"].append(restarts)
        return networks, losses, info

    def _front(self, networks, X, y, j: int) -> pd.DataFrame:
        names = list(self.feature_names_in_)
        opts = self.options_
        best: dict[int, HofEntry] = {}
        for net in networks:
            for factor in _LADDER:
                expr = eql_to_sympy(net, names, opts.threshold * factor)[j]
                expr = simplify_expression(expr, opts.round_digits)
                tree = sympy_to_tree(expr, self.operators_, names)
                pred, ok, _ = evaluate_tree_numpy(tree, X, self.operators_)
                if not np.all(ok):
                    continue
                loss = float(np.mean((pred - y) ** 2))
                c = tree.size
                if c not in best or loss < best[c].loss:
                    best[c] = HofEntry(c, loss, tree, False)
        entries, floor = [], np.inf
        for c in sorted(best):
            e = best[c]
            front = e.loss < floor
            floor = min(floor, e.loss)
            entries.append(HofEntry(e.complexity, e.loss, e.tree, front))
        return equations_table(entries, self.operators_, names, self.loss_scale)

    # -------------------------------------------------------------------------- results

    def _check_fitted(self):
        if not hasattr(self, "equations_list_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("This EQLRegressor is not fitted yet; call `fit(X, y)` first.")

    @property
    def equations_(self):
        """PySR's equations table (a list of tables for multi-output fits)."""
        self._check_fitted()
        return self.equations_list_[0] if self.nout_ == 1 else list(self.equations_list_)

    def _rows(self, index):
        self._check_fitted()
        out = []
        for j, table in enumerate(self.equations_list_):
            if len(table) == 0:
                raise RuntimeError(f"No finite extracted equation for output {j}.")
            idx = index[j] if isinstance(index, (list, tuple)) else index
            if idx is None:
                idx = select_index(table["loss"], table["score"], self.model_selection)
            out.append(table.iloc[int(idx)])
        return out

    def _one(self, values):
        return values[0] if self.nout_ == 1 else values

    def get_best(self, index=None):
        return self._one(self._rows(index))

    def predict(self, X, index=None):
        """Predictions of the chosen equation(s)."""
        self._check_fitted()
        X = check_data(X.to_numpy() if isinstance(X, pd.DataFrame) else X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features; the model was fitted on {self.n_features_in_}.")
        preds = [r["lambda_format"](X) for r in self._rows(index)]
        return preds[0] if self.nout_ == 1 else np.stack(preds, axis=1)

    def sympy(self, index=None):
        return self._one([r["sympy_format"] for r in self._rows(index)])

    def latex(self, index=None, precision: int = 3):
        names = list(self.feature_names_in_)
        return self._one([tree_to_latex(r["tree"], self.operators_, names, precision)
                          for r in self._rows(index)])

    def latex_table(self, indices=None, precision: int = 3,
                    columns=("equation", "complexity", "loss", "score")):
        """A booktabs LaTeX table of the equations (PySR's `latex_table`)."""
        from .._equations import latex_table

        self._check_fitted()
        return latex_table(self.equations_list_, self.operators_, list(self.feature_names_in_),
                           indices, precision, columns)

    def jax(self, index=None):
        """PySR's contract: `{"callable": f, "parameters": p}` with `f(X, p)` differentiable."""
        from .._equations import jax_callable

        return self._one([jax_callable(r["tree"], self.operators_) for r in self._rows(index)])

    def equinox(self, index=None):
        """The chosen equation(s) as an equinox module (`symjax_sr.export.to_equinox`).

        `module(X [N, F]) -> [N]` (`[N, outputs]` for several outputs), constants trainable.
        The trained network itself is `network_`, an `EQL` module.
        """
        from ..export import stack_equinox, to_equinox

        rows, names = self._rows(index), list(self.feature_names_in_)
        if self.nout_ == 1:
            return to_equinox(rows[0]["tree"], operators=self.operators_, variable_names=names)
        return stack_equinox([r["tree"] for r in rows], operators=self.operators_,
                             variable_names=names)

    def __repr__(self):
        if not hasattr(self, "equations_list_"):
            return "EQLRegressor(unfitted)"
        return f"EQLRegressor(equations=\n{self.equations_})"

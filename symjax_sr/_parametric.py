"""PySR's expression specs: plain expressions, and parametric ones with per-category constants.

A parametric expression (`ParametricExpressionSpec(max_parameters=n)`) is one formula
for every row, in which up to `n` parameters `p1 .. pn` take one value per category of
the rows (`fit(..., category=...)`): e.g. `y = p1 · sin(x0) + p2` with its own `p1, p2`
for each experiment.

Encoding: the search treats parameter `j` as one more variable, feature `F + j` (`F`
real features), so trees, mutations, simplification, complexity and printing need
nothing new; the values live in the member's constant table after its `K` ordinary
constants, `n · C` of them (`C` categories, slot `K + j·C + c`), so the constant
optimiser fits them with the constants. `ParametricEvaluator` wraps any evaluator: for
each category it turns every parameter leaf into a constant leaf holding that
category's value, evaluates on all rows, and keeps each row's own category. The cost
is `C` evaluations per member; the data's last row of `Xt` carries the category code.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._evaluate import Evaluator
from ._operators import CONST, VAR
from ._tree import Population

__all__ = ["ExpressionSpec", "ParametricExpressionSpec", "ParametricEvaluator",
           "encode_category", "parameter_names", "check_expression_spec", "used_parameters"]


@dataclasses.dataclass(frozen=True)
class ExpressionSpec:
    """PySR's default expression: one formula of the features (the same as `None`)."""


@dataclasses.dataclass(frozen=True)
class ParametricExpressionSpec:
    """One formula whose parameters `p1 .. p{max_parameters}` take one value per category.

    Fit with `fit(X, y, category=c)` (one integer label per row) and predict with
    `predict(X, category=c)`; `equations_["parameters"]` holds each equation's values,
    `[max_parameters, n_categories]`, columns in the order of `categories_`.
    """

    max_parameters: int

    def __post_init__(self):
        n = self.max_parameters
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"`max_parameters` must be an integer >= 1, got {n!r}.")


def check_expression_spec(spec):
    """`None`/`ExpressionSpec()` -> None; a `ParametricExpressionSpec` or
    `TemplateExpressionSpec` passes; else a clear error."""
    from ._template import TemplateExpressionSpec

    if spec is None or isinstance(spec, ExpressionSpec):
        return None
    if isinstance(spec, (ParametricExpressionSpec, TemplateExpressionSpec)):
        return spec
    raise TypeError(f"`expression_spec` must be None, ExpressionSpec(), "
                    f"ParametricExpressionSpec(max_parameters=n) or "
                    f"TemplateExpressionSpec(combine, expressions=[...]), got {spec!r}.")


def parameter_names(n: int) -> list[str]:
    """PySR's names of the parameters: `p1 .. pn`."""
    return [f"p{j + 1}" for j in range(n)]


def encode_category(category, n_rows: int, classes=None) -> tuple[np.ndarray, np.ndarray]:
    """Integer category labels -> codes `0 .. C-1` (int32) and the sorted labels.

    With `classes` (the labels seen in fit), a label outside them is an error that names it.
    """
    arr = np.asarray(category)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise ValueError(f"`category` must be 1-D with one label per row ({n_rows}), got shape "
                         f"{arr.shape}.")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"`category` must hold integer labels, got dtype {arr.dtype}; map your "
                        "labels to integers, e.g. `pd.factorize(labels)[0]`.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError("`category` must hold integer labels; it has NaN, inf or fractional "
                             "values.")
        arr = arr.astype(np.int64)
    if classes is None:
        classes = np.unique(arr)
    unknown = np.setdiff1d(np.unique(arr), classes)
    if unknown.size:
        raise ValueError(f"`category` has label(s) {unknown.tolist()} the model was not fitted on "
                         f"(fitted: {np.asarray(classes).tolist()}); parameters exist only for "
                         "those.")
    return np.searchsorted(classes, arr).astype(np.int32), np.asarray(classes)


def used_parameters(op, arg, n_features: int, n_params: int):
    """`[..., n_params]`: which parameters each tree of `op`/`arg` `[..., L]` reads
    (variables `n_features ..`; padding and anything after a tree's end must be opcode 0)."""
    j = jnp.where((op == VAR) & (arg >= n_features), arg - n_features, n_params)
    return (j[..., :, None] == jnp.arange(n_params)).any(axis=-2)


class ParametricEvaluator(Evaluator):
    """Evaluates parametric expressions with any evaluator `base` (see the module docstring).

    `Xt` is `[F + n_params + 1, N]`: the features, `n_params` placeholder rows (never
    read) and the category code of every row last.
    """

    base: Evaluator
    n_features: int = eqx.field(static=True)
    n_params: int = eqx.field(static=True)
    n_categories: int = eqx.field(static=True)
    const_slots: int = eqx.field(static=True)

    def _per_category(self, pop: Population):
        F, K, C = self.n_features, self.const_slots, self.n_categories
        is_param = (pop.op == VAR) & (pop.arg >= F)
        op = jnp.where(is_param, CONST, pop.op)
        arg = jnp.where(is_param, K + pop.arg - F, pop.arg)
        table = pop.const[:, K:].reshape(pop.const.shape[0], self.n_params, C)
        return op, arg, pop.const[:, :K], table

    def predict(self, pop, Xt):
        op, arg, reg, table = self._per_category(pop)
        X = Xt[:-1]
        cat = Xt[-1].astype(jnp.int32)

        def one(c):
            const = jnp.concatenate([reg, table[:, :, c]], axis=1)
            return self.base.predict(Population(op, arg, const), X)

        pred, ok = jax.lax.map(one, jnp.arange(self.n_categories))  # [C, P, N]
        pick = jnp.broadcast_to(cat[None, None, :], (1,) + pred.shape[1:])
        pred = jnp.take_along_axis(pred, pick, axis=0)[0]
        ok = jnp.take_along_axis(ok, pick, axis=0)[0]
        return jnp.where(ok, pred, jnp.nan), ok

    def free_constants(self, pop):
        """The slots the constant optimiser fits: the used ordinary constants, and every
        category's value of each parameter the expression uses."""
        F, K, C = self.n_features, self.const_slots, self.n_categories
        count = (pop.op == CONST).sum(axis=-1)
        regular = jnp.arange(K)[None, :] < count[:, None]
        used = used_parameters(pop.op, pop.arg, F, self.n_params)
        return jnp.concatenate([regular, jnp.repeat(used, C, axis=1)], axis=1)

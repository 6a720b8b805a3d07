"""Equinox export: a formula as an `eqx.Module` with trainable constants, via sympy2jax.

sympy2jax supplies the node machinery (one tiny module per SymPy node, memoised
sub-expressions); our operators reach it through its extension point `extra_funcs`,
which maps every head of the template to the operator's own JAX implementation: the
built-ins sympy2jax lacks (cube, neg, inv, relu, sign, erfc, gamma, round, mod, ...),
custom user operators, and the guarded `^` whose gradient stays finite for a negative
base. The constants are not sympy2jax leaves but one vector, `constants`, fed in as
symbols: gradients, optimisers and `quantise_to` see exactly the formula's constants.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import sympy
import sympy2jax
from jaxtyping import Array, Float

from .._operators import OperatorSet
from ._template import Template, make_template, operator_by_name

__all__ = ["EquinoxExpression", "to_equinox", "stack_equinox", "ParametricEquinoxExpression",
           "TemplateEquinoxExpression", "template_to_equinox"]

_SPECIAL = {
    "nan": lambda: jnp.nan,
    "inf": lambda: jnp.inf,
    "-inf": lambda: -jnp.inf,
    "identity": lambda x: x,
    "zero": jnp.zeros_like,
}


def _fold(fn):
    def folded(*args):
        return functools.reduce(fn, args)

    return folded


def jax_function(name: str, operators: OperatorSet | None):
    """The JAX function of operator (or special) `name`; binary ones fold n-ary calls."""
    if name in _SPECIAL:
        return _SPECIAL[name]
    op = operator_by_name(name, operators)
    return _fold(op.jax_fn) if op.arity == 2 else op.jax_fn


def _symbolic(template: Template) -> sympy2jax.SymbolicModule:
    extra = {head: jax_function(name, template.operators) for head, name in template.heads.items()}
    try:
        return sympy2jax.SymbolicModule(template.exprs, extra_funcs=extra, make_array=False)
    except KeyError as err:
        raise ValueError(
            f"Cannot export {list(template.exprs)} to JAX: {err.args[0]}. Add a custom "
            "operator for it (a JAX callable plus its `extra_sympy_mappings` entry) and "
            "pass its operator set as `operators=`."
        ) from err


def broadcast_inputs(template: Template, X, variables: dict, asarray, name: str):
    """`(inputs by name, batch shape)` from `X [..., n_features]` or keyword variables."""
    if X is not None:
        if variables:
            raise TypeError(f"Call {name} with `X` or with keyword variables, not both.")
        X = asarray(X)
        need = template.n_features if template.n_features is not None else len(template.variable_names)
        ok = X.shape[-1] == need if template.n_features is not None else X.shape[-1] >= need
        if X.ndim == 0 or not ok:
            raise ValueError(
                f"{name} expects X of shape [..., {need}] (features "
                f"{list(template.variable_names)}), got shape {tuple(X.shape)}."
            )
        return {n: X[..., i] for i, n in enumerate(template.variable_names)}, tuple(X.shape[:-1])
    unknown = sorted(set(variables) - set(template.variable_names))
    missing = sorted(template.used_variables() - set(variables))
    if unknown or missing:
        raise TypeError(
            f"{name} takes the variables {list(template.variable_names)} as keywords; "
            f"missing {missing}, unknown {unknown}."
        )
    inputs = {n: asarray(v) for n, v in variables.items()}
    return inputs, tuple(np.broadcast_shapes(*(v.shape for v in inputs.values())))


class EquinoxExpression(eqx.Module):
    """A formula (or several, stacked) as an equinox module.

    - `constants`: the formula's float constants, the only trainable leaf.
    - `symbolic`: the sympy2jax module that evaluates the template.

    Call it as `module(X)` with `X [..., n_features]`, returning `[...]` (or
    `[..., outputs]` for a stacked module), or with the variables as keywords,
    `module(x0=..., x1=...)`. Jit, vmap and grad it with the equinox filters
    (`eqx.filter_jit`, `eqx.filter_grad`); `.sympy()` gives the formula back with the
    current constants.
    """

    constants: Float[Array, " nconst"]
    symbolic: sympy2jax.SymbolicModule
    template: Template = eqx.field(static=True)

    def __init__(self, template: Template, dtype=None):
        self.template = template
        self.symbolic = _symbolic(template)
        self.constants = jnp.asarray(template.values, dtype=dtype)

    @property
    def variable_names(self) -> tuple[str, ...]:
        return self.template.variable_names

    def __call__(self, X=None, **variables):
        """Evaluate on `X [..., n_features]` or on keyword variables."""

        def asarray(v):
            v = jnp.asarray(v)
            return v if jnp.issubdtype(v.dtype, jnp.inexact) else v.astype(self.constants.dtype)

        inputs, batch = broadcast_inputs(self.template, X, variables, asarray, "EquinoxExpression")
        dtype = jnp.result_type(self.constants, *inputs.values())
        for i, c in enumerate(self.template.constant_names):
            inputs[c] = self.constants[i]
        outs = [jnp.broadcast_to(jnp.asarray(o, dtype), batch) for o in self.symbolic(**inputs)]
        return jnp.stack(outs, axis=-1) if self.template.multi_output else outs[0]

    def sympy(self):
        """The SymPy expression (a list for a stacked module) with the current constants."""
        return self.template.sympy(np.asarray(self.constants), self.constants.dtype)


def to_equinox(expr_or_tree, *, operators: OperatorSet | None = None,
               variable_names: Sequence[str] | None = None, dtype=None) -> EquinoxExpression:
    """Export a formula as an `eqx.Module` whose float constants are trainable.

    **Arguments:**

    - `expr_or_tree`: a SymPy expression (exported as written), or a host `Tree`
      (exported node for node with the registry's JAX implementations).
    - `operators`: the `OperatorSet`; required for a `Tree`, and for a SymPy expression
      that uses custom operators.
    - `variable_names`: the feature names in column order of `X`; for SymPy input they
      default to the symbols `x0, x1, ...`.
    - `dtype`: dtype of the constants (JAX's default float when None).

    **Returns:** an `EquinoxExpression`: `module(X [N, n_features]) -> [N]`.

    ```python
    f = to_equinox(sympy.sympify("2.5*cos(x0) + x1"))
    f(jnp.ones((4, 2)))  # [4]
    f.sympy()            # 2.5*cos(x0) + x1
    ```
    """
    if isinstance(expr_or_tree, (list, tuple)):
        raise TypeError("`to_equinox` exports one formula; use `stack_equinox` for several.")
    return EquinoxExpression(make_template(expr_or_tree, operators, variable_names), dtype)


def stack_equinox(exprs_or_trees: Sequence, *, operators: OperatorSet | None = None,
                  variable_names: Sequence[str] | None = None, dtype=None) -> EquinoxExpression:
    """Several formulas as one module returning `[N, outputs]` (as `to_equinox` each).

    ```python
    f = stack_equinox([sympy.sympify("x0 + 1.5"), sympy.sympify("x0 * x1")])
    f(jnp.ones((4, 2))).shape  # (4, 2)
    ```
    """
    if isinstance(exprs_or_trees, (str, sympy.Basic)) or not isinstance(exprs_or_trees, Sequence):
        raise TypeError("`stack_equinox` takes a list of formulas; use `to_equinox` for one.")
    return EquinoxExpression(make_template(list(exprs_or_trees), operators, variable_names), dtype)


class ParametricEquinoxExpression(eqx.Module):
    """A parametric formula as an equinox module: `module(X [N, F], category [N])`.

    - `expression`: the formula as an `EquinoxExpression` of the features and then the
      parameters (`p1 .. pn` after the `F` features), its constants trainable.
    - `parameters`: `[n_params, n_categories]`, trainable; `category` holds each row's
      column index into it (the position of its label in the regressor's `categories_`).
    """

    expression: EquinoxExpression
    parameters: Float[Array, "params categories"]

    def __call__(self, X, category):
        X = jnp.asarray(X)
        values = jnp.asarray(self.parameters, X.dtype)[:, jnp.asarray(category)]
        return self.expression(jnp.concatenate([X, values.T], axis=-1))

    def sympy(self):
        """The SymPy expression with the current constants, in the parameter symbols."""
        return self.expression.sympy()


class TemplateEquinoxExpression(eqx.Module):
    """A template formula as an equinox module: `module(X [N, F], category=None)`.

    - `expressions`: `{name: EquinoxExpression}`, each sub-expression over its own
      arguments (columns `#1 .. #a` of its input), its constants trainable.
    - `parameters`: `{name: vector}` of the template's parameters, trainable.
    - `layout`: the template (its `combine`, names and arities), static.
    """

    expressions: dict
    parameters: dict
    layout: object = eqx.field(static=True)

    def __call__(self, X, category=None):
        from .._template import combine_rows

        return combine_rows(self.layout, lambda e, cols: self.expressions[e](cols), X,
                            self.parameters, category)

    def sympy(self):
        """`{expression: SymPy}` with the current constants, in the arguments `#1 .. #a`."""
        from .._template import with_argument_symbols

        return {e: with_argument_symbols(m.sympy(), a)
                for (e, m), a in zip(self.expressions.items(), self.layout.arities)}


def template_to_equinox(member, operators: OperatorSet, layout, dtype=None) -> TemplateEquinoxExpression:
    """A `TemplateMember` (one row of a template fit's `equations_["tree"]`) as a
    `TemplateEquinoxExpression`."""
    from .._template import placeholders

    exprs = {e: to_equinox(t, operators=operators, variable_names=placeholders(a), dtype=dtype)
             for e, a, t in zip(layout.expressions, layout.arities, member.trees)}
    params = {k: jnp.asarray(v, dtype) for k, v in member.parameters(layout).items()}
    return TemplateEquinoxExpression(exprs, params, layout)

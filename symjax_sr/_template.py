"""PySR's template expressions: sub-expressions combined by a user's JAX function.

`TemplateExpressionSpec(combine, expressions=("f", "g"))` searches for the
sub-expressions `f, g` of a fixed structure such as `sin(f(x0)) + g(x1)^2`. Where PySR
takes the structure as a Julia string, here `combine` is a Python function called with
keyword arguments by name: each expression name gets a JAX function of its arguments
(arrays, one value per row), each variable name a column of `X`, each parameter name
its learned vector, and `category` (when fitted with one) each row's category code::

    def combine(f, g, x0, x1):
        return jnp.sin(f(x0)) + g(x1) ** 2

A sub-expression sees only its arguments, `#1 .. #a` in the order of the call (the
restriction on variables PySR's templates give); `a` is read by tracing `combine` once.

Encoding (`TemplateLayout`): a member holds its `K` sub-trees side by side in one row
of `K · Ls` nodes (each right-aligned in its own `Ls` = `maxsize - K + 1` slice), its
constant table `K · Kc` constants (sub-tree `k` owns slots `k·Kc ..`) followed by the
parameter vectors. The search's tree operations act on one sub-tree at a time (PySR
mutates one sub-expression per event), and a member's complexity is the sum of its
sub-trees', as in SymbolicRegression.jl. `TemplateEvaluator` evaluates each member
under `vmap` by calling `combine` with its sub-trees evaluated by any evaluator.
"""

from __future__ import annotations

import dataclasses
import inspect
import keyword
from collections.abc import Callable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._evaluate import Evaluator
from ._operators import CONST
from ._tree import Population, Tree

__all__ = ["TemplateExpressionSpec", "TemplateLayout", "TemplateEvaluator", "TemplateMember",
           "template_layout", "call_combine", "combine_rows", "argument_names", "placeholders",
           "with_argument_symbols", "sub_slice"]


@dataclasses.dataclass(frozen=True, eq=False)
class TemplateExpressionSpec:
    """Sub-expressions `expressions` combined by `combine` (see the module docstring).

    - `combine`: a JAX function taking keyword arguments by name (expressions,
      variables, parameters and `category`); it returns one value per row.
    - `expressions`: the names of the sub-expressions to search for.
    - `variable_names`: the names `combine` uses for the columns of `X`; by default the
      regressor's feature names (`x0, x1, ...` or a DataFrame's columns).
    - `parameters`: learned vectors, `{"p": 2}` for a `p` of length 2; index them in
      `combine` (`p[0]`, or `p[category]` for one value per category).
    """

    combine: Callable
    expressions: Sequence[str]
    variable_names: Sequence[str] | None = None
    parameters: Mapping[str, int] | None = None

    def __post_init__(self):
        if not callable(self.combine):
            raise TypeError("`combine` must be a Python/JAX function such as "
                            "`lambda f, g, x0, x1: jnp.sin(f(x0)) + g(x1) ** 2`, got "
                            f"{type(self.combine).__name__}; Julia strings are not evaluated.")
        if isinstance(self.expressions, str) or not self.expressions:
            raise ValueError(f"`expressions` must be a non-empty list of names, e.g. ['f', 'g'], "
                             f"got {self.expressions!r}.")
        for name, value in (self.parameters or {}).items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"parameter {name!r} needs a length >= 1, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class TemplateLayout:
    """A template fixed for one fit: names, arities and the sizes the search encodes."""

    combine: Callable
    expressions: tuple[str, ...]
    variables: tuple[str, ...]
    parameters: tuple[tuple[str, int], ...]
    arities: tuple[int, ...]
    n_categories: int  # 0: `combine` takes no `category`
    accepted: frozenset  # the names `combine` is called with

    @property
    def n_sub(self) -> int:
        return len(self.expressions)

    @property
    def n_param_values(self) -> int:
        return sum(n for _, n in self.parameters)

    def split_parameters(self, values) -> dict:
        """The flat parameter values (last axis) -> `{name: vector}`."""
        out, at = {}, 0
        for name, n in self.parameters:
            out[name] = values[..., at:at + n]
            at += n
        return out


class _CallError(ValueError):
    """A sub-expression called wrongly inside `combine` (raised as is, not wrapped)."""


def argument_names(fn: Callable) -> tuple[tuple[str, ...], bool]:
    """The keyword names `fn` can take, and whether it takes `**kwargs`."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return (), True
    names, var_kw = [], False
    for p in sig.parameters.values():
        if p.kind == p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.append(p.name)
        elif p.kind == p.POSITIONAL_ONLY:
            raise TypeError(f"`combine` takes arguments by name; make {p.name!r} a normal "
                            "(not positional-only) argument.")
    return tuple(names), var_kw


def call_combine(layout: TemplateLayout, functions: Mapping, columns, params: Mapping, category):
    """`combine(**by_name)`: the expressions, the variable columns, the parameters and
    `category`, the ones it accepts."""
    kw = dict(functions)
    kw.update({v: columns[i] for i, v in enumerate(layout.variables)})
    kw.update(params)
    if category is not None:
        kw["category"] = category
    return layout.combine(**{k: v for k, v in kw.items() if k in layout.accepted})


def argument_columns(args, n: int, dtype):
    """A sub-expression call's arguments as columns `[n, a]` (scalars broadcast to the rows)."""
    return jnp.stack([jnp.broadcast_to(jnp.asarray(a, dtype), (n,)) for a in args], axis=-1)


def combine_rows(layout: TemplateLayout, evaluate: Callable, X, params: Mapping, category=None):
    """`combine` on the rows of `X [N, F]`, expression `e` computed by
    `evaluate(e, columns [N, a])`: what `jax()` and the equinox module run."""
    X = jnp.asarray(X)
    n = X.shape[0]
    if layout.n_categories and category is None:
        raise ValueError("This template takes `category`: pass each row's category code (its "
                         "column in `categories_`).")
    funcs = {e: (lambda *args, e=e: evaluate(e, argument_columns(args, n, X.dtype)))
             for e in layout.expressions}
    params = {k: jnp.asarray(v, X.dtype) for k, v in params.items()}
    cat = None if category is None else jnp.asarray(category)
    out = call_combine(layout, funcs, [X[:, i] for i in range(X.shape[1])], params, cat)
    return jnp.broadcast_to(out, (n,))


def template_layout(spec: TemplateExpressionSpec, feature_names: Sequence[str],
                    n_categories: int = 0) -> TemplateLayout:
    """Check `spec` against the data's features (and categories) and read each
    expression's arity by tracing `combine` once on abstract rows."""
    variables = tuple(spec.variable_names) if spec.variable_names is not None else tuple(feature_names)
    if len(variables) != len(feature_names):
        raise ValueError(f"`variable_names` names {len(variables)} variables but X has "
                         f"{len(feature_names)} features; give one name per column of X.")
    expressions = tuple(spec.expressions)
    parameters = tuple((str(k), int(v)) for k, v in (spec.parameters or {}).items())
    names = list(expressions) + list(variables) + [p for p, _ in parameters]
    if n_categories:
        names.append("category")
    for n in names:
        if not isinstance(n, str) or not n.isidentifier() or keyword.iskeyword(n):
            raise ValueError(f"{n!r} cannot be an argument name of `combine`; use Python "
                             "identifiers for expressions, variables and parameters.")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"The name(s) {dup} are used twice among expressions, variables, "
                         "parameters (and `category`); rename them.")
    taken, var_kw = argument_names(spec.combine)
    accepted = frozenset(names) if var_kw else frozenset(taken)
    unknown = [n for n in taken if n not in names]
    if unknown:
        hint = (" `category` is passed only when fit is given `category=`."
                if "category" in unknown else "")
        raise ValueError(f"`combine` takes {unknown}, which are not expressions {list(expressions)}, "
                         f"variables {list(variables)} or parameters {[p for p, _ in parameters]}."
                         + hint)
    missing = [e for e in expressions if e not in accepted]
    if missing:
        raise ValueError(f"`combine` does not take the expression(s) {missing}; add them to its "
                         "arguments or drop them from `expressions`.")
    calls: dict[str, set] = {e: set() for e in expressions}
    rows = 7

    def stub(name):
        def f(*args):
            for a in args:
                if jnp.ndim(a) not in (0, 1) or (jnp.ndim(a) == 1 and jnp.shape(a)[0] != rows):
                    raise _CallError(f"expression {name!r} is called with an argument of shape "
                                     f"{jnp.shape(a)}; pass one value per row (a variable, or an "
                                     "array of the rows) or a scalar.")
            calls[name].add(len(args))
            return jnp.zeros((rows,), jnp.float32)
        return f

    def trace():
        cols = [jnp.zeros((rows,), jnp.float32) for _ in variables]
        params = {p: jnp.zeros((n,), jnp.float32) for p, n in parameters}
        cat = jnp.zeros((rows,), jnp.int32) if n_categories else None
        probe = TemplateLayout(spec.combine, expressions, variables, parameters, (), n_categories,
                               accepted)
        return call_combine(probe, {e: stub(e) for e in expressions}, cols, params, cat)

    try:
        out = jax.eval_shape(trace)
    except _CallError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's function failed: say where
        raise ValueError(f"`combine` failed on abstract rows: {type(e).__name__}: {e}") from e
    if not hasattr(out, "shape") or out.shape not in ((rows,), ()):
        raise ValueError(f"`combine` must return one value per row (shape [N]), got "
                         f"{getattr(out, 'shape', type(out).__name__)}.")
    arities = []
    for e in expressions:
        seen = calls[e]
        if not seen:
            raise ValueError(f"`combine` never calls expression {e!r}; call it or drop it.")
        if len(seen) > 1:
            raise ValueError(f"expression {e!r} is called with {sorted(seen)} arguments; call it "
                             "with the same number every time.")
        (a,) = seen
        if a < 1:
            raise ValueError(f"expression {e!r} is called with no argument; give it at least one "
                             "(a constant sub-expression is a parameter: use `parameters`).")
        arities.append(a)
    return TemplateLayout(spec.combine, expressions, variables, parameters, tuple(arities),
                          n_categories, accepted)


def placeholders(a: int) -> list[str]:
    """Variable names for printing or exporting a sub-tree (identifiers, as the printers
    and sympy2jax need), swapped for `#1 .. #a` afterwards."""
    return [f"argph{i + 1}x" for i in range(a)]


def _unplace(text: str, a: int, form: str, latex: bool = False) -> str:
    for i, n in enumerate(placeholders(a)):
        text = text.replace(rf"\mathrm{{{n}}}" if latex else n, form.format(i + 1))
    return text


def with_argument_symbols(expr, a: int):
    """A SymPy expression in `placeholders(a)` rewritten in the symbols `#1 .. #a`."""
    import sympy

    return expr.xreplace({sympy.Symbol(n): sympy.Symbol(f"#{i + 1}")
                          for i, n in enumerate(placeholders(a))})


def sub_slice(x, k: int, size: int):
    """Slice `k` of length `size` of the last axis (sub-tree `k`'s nodes or constants)."""
    return x[..., k * size:(k + 1) * size]


class TemplateEvaluator(Evaluator):
    """Evaluates template members (`[P, K · Ls]`) with any evaluator `base` for their
    sub-trees. `Xt` is `[F (+ 1), N]`: the variables, then the category code when the
    template takes one. A row is ok when the result is finite and every call of a
    sub-expression was ok on it (SymbolicRegression.jl's rule), even a call whose value
    the result ignores; failed calls hand `combine` zeros, so no NaN reaches a gradient."""

    base: Evaluator
    layout: TemplateLayout = eqx.field(static=True)
    sub_length: int = eqx.field(static=True)
    const_slots: int = eqx.field(static=True)

    def predict(self, pop, Xt):
        lay, Ls, Kc = self.layout, self.sub_length, self.const_slots
        F = len(lay.variables)
        N, dtype = Xt.shape[1], Xt.dtype
        cols = [Xt[i] for i in range(F)]
        category = Xt[F].astype(jnp.int32) if lay.n_categories else None

        def member(op, arg, const):
            oks = []

            def expression(k):
                sub = Population(sub_slice(op, k, Ls)[None], sub_slice(arg, k, Ls)[None],
                                 sub_slice(const[:lay.n_sub * Kc], k, Kc)[None])

                def f(*args):
                    pred, ok = self.base.predict(sub, argument_columns(args, N, dtype).T)
                    oks.append(ok[0])
                    return jnp.where(ok[0], pred[0], 0.0)  # clean values into `combine`
                return f

            funcs = {e: expression(k) for k, e in enumerate(lay.expressions)}
            params = lay.split_parameters(const[lay.n_sub * Kc:].astype(dtype))
            out = jnp.broadcast_to(
                jnp.asarray(call_combine(lay, funcs, cols, params, category), dtype), (N,))
            ok = jnp.isfinite(out)
            for o in oks:
                ok = ok & o
            return jnp.where(ok, out, jnp.nan), ok

        return jax.vmap(member)(pop.op, pop.arg, pop.const)

    def free_constants(self, pop):
        """Each sub-tree's used constants (the first `count` of its slots) and every
        parameter value."""
        lay, Ls, Kc = self.layout, self.sub_length, self.const_slots
        parts = []
        for k in range(lay.n_sub):
            count = (sub_slice(pop.op, k, Ls) == CONST).sum(axis=-1)
            parts.append(jnp.arange(Kc)[None, :] < count[:, None])
        parts.append(jnp.ones((pop.op.shape[0], lay.n_param_values), bool))
        return jnp.concatenate(parts, axis=1)


@dataclasses.dataclass(frozen=True)
class TemplateMember:
    """One template expression on the host: a `Tree` per sub-expression (variables
    `0 .. a-1` are its arguments `#1 .. #a`) and the flat parameter values."""

    trees: tuple[Tree, ...]
    params: np.ndarray

    @property
    def size(self) -> int:
        return sum(t.size for t in self.trees)

    @classmethod
    def from_row(cls, op, arg, const, layout: TemplateLayout, sub_length: int, const_slots: int):
        """A member from its encoded row (`op`/`arg` `[K · Ls]`, `const` `[K · Kc + params]`)."""
        op, arg, const = np.asarray(op), np.asarray(arg), np.asarray(const)
        trees = []
        for k in range(layout.n_sub):
            sub = Population(sub_slice(op, k, sub_length)[None], sub_slice(arg, k, sub_length)[None],
                             sub_slice(const[:layout.n_sub * const_slots], k, const_slots)[None])
            trees.append(sub.tree(0))
        return cls(tuple(trees), const[layout.n_sub * const_slots:].copy())

    def parameters(self, layout: TemplateLayout) -> dict:
        """`{name: values}` of the parameter vectors."""
        return {k: np.asarray(v) for k, v in layout.split_parameters(self.params).items()}

    def to_string(self, operators, layout: TemplateLayout, precision: int | None = None) -> str:
        """PySR's display of a template: `f = #1 * 2.1; g = cos(#1)`, then the parameters."""
        from ._strings import tree_to_string

        parts = []
        for e, a, t in zip(layout.expressions, layout.arities, self.trees):
            text = tree_to_string(t, operators, placeholders(a), precision=precision)
            parts.append(f"{e} = {_unplace(text, a, '#{}')}")
        for name, v in self.parameters(layout).items():
            vals = ", ".join(f"{x:.{precision or 6}g}" for x in v)
            parts.append(f"{name} = [{vals}]")
        return "; ".join(parts)

    def to_sympy(self, operators, layout: TemplateLayout) -> dict:
        """`{expression: SymPy expression}` in the arguments `#1 .. #a`."""
        from ._sympy import tree_to_sympy

        return {e: with_argument_symbols(tree_to_sympy(t, operators, placeholders(a)), a)
                for e, a, t in zip(layout.expressions, layout.arities, self.trees)}

    def to_latex(self, operators, layout: TemplateLayout, precision: int = 3) -> dict:
        """`{expression: LaTeX}` in the arguments `\\#1 .. \\#a`."""
        from ._sympy import tree_to_latex

        return {e: _unplace(tree_to_latex(t, operators, placeholders(a), precision), a,
                            r"\#{}", latex=True)
                for e, a, t in zip(layout.expressions, layout.arities, self.trees)}

    def jax(self, operators, layout: TemplateLayout) -> dict:
        """`{"callable": f, "parameters": p}`: `f(X [N, F], p, category=None) -> [N]`, with
        `p` `{expression: constants, parameter: vector}`; differentiable in `p` and `X`."""
        from ._equations import jax_callable

        subs = {e: jax_callable(t, operators) for e, t in zip(layout.expressions, self.trees)}
        pnames = [p for p, _ in layout.parameters]

        def f(X, parameters, category=None):
            return combine_rows(layout, lambda e, cols: subs[e]["callable"](cols, parameters[e]),
                                X, {p: parameters[p] for p in pnames}, category)

        values = {e: s["parameters"] for e, s in subs.items()}
        values.update({k: jnp.asarray(v) for k, v in self.parameters(layout).items()})
        return {"callable": f, "parameters": values}

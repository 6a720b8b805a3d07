"""Hall-of-fame expressions rewritten by SymPy under the signs the training data show.

A search on data where `r > 0` can reach `sqrt(r^-2)` before `1/r`: equal on the data,
but not an identity of the reals, so the longer form is what the user reads (and what a
symbolic comparison with `1/r` rejects). After a search, each hall-of-fame expression
goes through SymPy with the features whose training values are all positive declared
positive (the others real). SymPy's automatic evaluation then rewrites `sqrt(r**-2)` to
`1/r`, `sqrt(x*x)` to `x`, `log(exp(x))` to `x`, and `cos(x - pi/2)` (a constant snapped
by `_snap.py`) to `sin(x)`. Rational forms are also put over one denominator and factored
(`sympy.cancel`, `sympy.factor`): the search can reach `a*x/(a*x + a)` or `1 - 1/(x + 1)`
before `x/(x + 1)`, and `x*(x*(x^2 + x) + x) + x` before `x*(x + 1)*(x^2 + 1)`. The
simplest form that has a lower complexity, satisfies the search's constraints and keeps the
training loss (within `_snap.LOSS_RTOL`, or `_snap.LOSS_ATOL` times the constant model's)
takes the hall-of-fame slot of its complexity when it beats the entry there; the entry it
came from stays.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import numpy as np
import sympy

from ._constraints import satisfies, tree_complexity
from ._mutate import to_nodes
from ._options import SearchOptions
from ._snap import CLOSE, LOSS_RTOL, host_loss, loss_atol, snap_entries, with_pareto
from ._sympy import sympy_to_tree, tree_to_sympy
from ._tree import Tree, stack_trees

__all__ = ["rewrite_entries"]


@functools.partial(jax.jit, static_argnums=3)
def _check(op, arg, const, opts: SearchOptions):
    """Complexity and `satisfies` of one right-aligned member. `to_nodes` runs inside: eager,
    its roll by the tree's size would compile once per size."""
    nodes = to_nodes(op, arg, const)
    return tree_complexity(nodes, opts), satisfies(nodes, opts, opts.maxsize, True)


def _assumed(expr: sympy.Expr, positive: np.ndarray) -> sympy.Expr:
    """`expr` with feature `xi` positive where `positive[i]`, real otherwise."""
    subs = {}
    for s in expr.free_symbols:
        i = int(s.name[1:])
        subs[s] = sympy.Symbol(s.name, positive=True) if positive[i] else sympy.Symbol(s.name, real=True)
    return expr.subs(subs)


def _same(a: Tree, b: Tree) -> bool:
    """Whether two trees have the same nodes (constants aside)."""
    return a.size == b.size and np.array_equal(a.op, b.op) and np.array_equal(a.arg, b.arg)


def _whole(expr: sympy.Expr) -> sympy.Expr:
    """`expr` with its whole-number floats as integers (`cancel` leaves `1.0*x`)."""
    return expr.xreplace({f: sympy.Integer(int(f)) for f in expr.atoms(sympy.Float)
                          if abs(f) < 2**53 and f == int(f)})


def _forms(expr: sympy.Expr) -> list[sympy.Expr]:
    """SymPy's automatic form of `expr`, then over one denominator and factored.

    The polynomial algebra sees each float as a symbol, put back after: as a number it
    becomes a rational with a denominator near 2^52, on which SymPy's multivariate
    factorisation can run for minutes. Magnitudes within `CLOSE` of each other are one
    symbol, so that `1.0978258*x/(-1.0978259*x - 1.0978258)` (constants fitted apart, to
    float32 precision) cancels to `-x/(x + 1)`; the caller checks that a form keeps the
    loss. Not tried where a power above 8 would be expanded ((x + 1)^30 has 31 terms) or
    on more than 10 symbols (a cost bound)."""
    forms = [expr]
    if any(p.exp.is_Number and abs(p.exp) > 8 for p in expr.atoms(sympy.Pow)):
        return forms
    groups, symbol = [], {}  # (first magnitude, its symbol); magnitude -> symbol
    for m in sorted({abs(f) for f in expr.atoms(sympy.Float)}, key=float):
        if not groups or m > groups[-1][0] * (1 + CLOSE):
            groups.append((m, sympy.Dummy()))
        symbol[m] = groups[-1][1]
    abstract = expr.xreplace({f: symbol[abs(f)] if f > 0 else -symbol[abs(f)]
                              for f in expr.atoms(sympy.Float)})
    if len(abstract.free_symbols) > 10:
        return forms
    back = {s: m for m, s in groups}
    for rewrite in (sympy.cancel, sympy.factor):
        try:
            forms.append(_whole(rewrite(abstract).xreplace(back)))
        except (sympy.PolynomialError, sympy.polys.polyerrors.CoercionFailed, ValueError,
                TypeError, RecursionError):
            pass  # a form SymPy's polynomial algebra does not take
    return forms


def _rewritten(tree: Tree, opts: SearchOptions, positive: np.ndarray,
               names: tuple[str, ...]) -> list[Tree]:
    """The trees SymPy makes of `tree` under the data's signs (`_forms`) that differ from
    it and are expressible in the operator set."""
    expr = tree_to_sympy(tree, opts.operators, names)
    if expr.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        return []
    out = []
    for form in _forms(_assumed(expr, positive)):
        try:
            new = sympy_to_tree(form, opts.operators, names, dtype=tree.value.dtype)
        except (ValueError, TypeError, KeyError, RecursionError):
            continue  # e.g. `Abs` without an `abs` operator
        if not any(_same(new, t) for t in [tree, *out]):
            out.append(new)
    return out


def _complexity_ok(tree: Tree, opts: SearchOptions) -> tuple[int, bool]:
    """The tree's complexity and whether the search could hold it (size, constant table,
    `satisfies`)."""
    try:
        pop = stack_trees([tree], opts.length, opts.const_slots)
    except ValueError:  # more nodes or constants than a member holds
        return 0, False
    c, ok = _check(pop.op[0], pop.arg[0], pop.const[0], opts)
    return int(c), bool(ok)


def rewrite_entries(entries: list, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
                    opts: SearchOptions) -> list:
    """Hall-of-fame entries (simplest first, one per complexity) with the simpler forms
    SymPy finds under the signs of the training data `X` (its columns are the features)
    added where they beat the entry at their complexity (see the module docstring); the
    Pareto flags are recomputed when anything changed."""
    elementwise_loss = opts.elementwise_loss
    n_features = X.shape[1]
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    w = None if weights is None else np.asarray(weights, np.float64)
    positive = np.zeros(opts.n_features, bool)
    positive[:n_features] = np.all(X[:, :n_features] > 0, axis=0)
    names = tuple(f"x{i}" for i in range(opts.n_features))
    atol = loss_atol(X, y, w, opts.operators, elementwise_loss)
    slots = {e.complexity: e for e in entries}
    changed = False
    for e in entries:
        if not isinstance(e.tree, Tree) or e.params is not None:
            continue
        # the simplest of the forms that the search could hold and that keep the loss
        before, found = None, None
        for new in _rewritten(e.tree, opts, positive, names):
            c, ok = _complexity_ok(new, opts)
            if not ok or c >= (e.complexity if found is None else found[1]):
                continue
            if before is None:
                before = host_loss(e.tree, X, y, w, opts.operators, elementwise_loss)
            after = host_loss(new, X, y, w, opts.operators, elementwise_loss)
            if math.isfinite(after) and after <= before * (1 + LOSS_RTOL) + atol:
                found = (new, c, after)
        if found is None:
            continue
        new, c, after = found
        # a rewrite's constants are new (SymPy folds `0.7071*x0*2.8286*x1` into
        # `2.00004*x0*x1`): they get the same snapping as the search's
        [cand] = snap_entries([dataclasses.replace(e, complexity=c, loss=after, tree=new)],
                              X, y, w, opts.operators, elementwise_loss)
        there = slots.get(c)
        if there is not None and there.loss <= cand.loss:
            continue
        slots[c] = cand
        changed = True
    return with_pareto([slots[c] for c in sorted(slots)]) if changed else entries

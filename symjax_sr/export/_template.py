"""What every export is built from: a SymPy template whose constants are symbols.

A `Template` holds one SymPy expression per output in which every float constant is a
symbol (`c0, c1, ...`, one per occurrence), plus the constants' starting values. The
backends (equinox, torch) turn the template into a function of the variables and one
trainable constant vector, and `Template.sympy(values)` substitutes the current values
back. A `Tree` becomes a template node for node: each operator is applied through a
private SymPy head that maps to the operator's own implementation, so the export
computes exactly what the search evaluated. A SymPy expression is exported as written:
its function heads map to operators through `sympy_heads`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import sympy

from .._operators import CONST, OPERATORS, VAR, Operator, OperatorSet
from .._strings import _check_names
from .._sympy import tree_to_sympy
from .._tree import Tree

__all__ = ["Template", "make_template", "sympy_heads", "operator_by_name"]

# SymPy heads of the structural operators; backends fold their n-ary forms pairwise.
_STRUCTURAL = {sympy.Add: "+", sympy.Mul: "*", sympy.Pow: "^", sympy.Max: "max", sympy.Min: "min"}
# Numbers and real-part helpers SymPy may put into an expression.
SPECIAL = {
    type(sympy.nan): "nan",
    type(sympy.oo): "inf",
    type(sympy.zoo): "inf",  # as `sympy_to_tree`: a real tree reads `zoo` as +inf
    type(-sympy.oo): "-inf",
    sympy.re: "identity",
    sympy.conjugate: "identity",
    sympy.im: "zero",
}


def operator_by_name(name: str, operators: OperatorSet | None) -> Operator:
    """The operator called `name`: from `operators` first, then the built-in registry."""
    if operators is not None and name in operators.names:
        return operators.operator(operators.opcode(name))
    return OPERATORS[name]


def sympy_heads(operators: OperatorSet | None) -> dict:
    """SymPy function head -> operator name (or a `SPECIAL` name) for exporting SymPy.

    Built-in heads first; a custom operator whose SymPy form is a plain call of a head
    of its own (`softclip(x)`) adds that head.
    """
    heads: dict = dict(_STRUCTURAL)
    customs = [] if operators is None else [o for o in operators.operators if OPERATORS.get(o.name) is not o]
    for op in (*OPERATORS.values(), *customs):
        head = op.sympy_head
        if head is not None:
            heads.setdefault(head, op.name)
    heads.update(SPECIAL)
    return heads


def constant_value(v: float, dtype) -> float:
    """The shortest decimal that rounds to `v` in `dtype`, as a Python float (`0.02`, not
    `0.019999999552965164`, for a float32 constant)."""
    v = float(v)
    if not math.isfinite(v) or np.dtype(dtype) == np.float64:
        return v
    return float(str(np.dtype(dtype).type(v)))


def _sympy_number(v: float) -> sympy.Expr:
    if math.isnan(v):
        return sympy.nan
    if math.isinf(v):
        return sympy.oo if v > 0 else -sympy.oo
    return sympy.Float(v)


@dataclasses.dataclass(frozen=True, eq=False)
class Template:
    """Exportable expressions with their constants as symbols.

    - `exprs`: one SymPy expression per output, constants replaced by `constant_names`.
    - `heads`: the function heads of `exprs` -> operator names (or `SPECIAL` names).
    - `values`: the constants' starting values (float64), in `constant_names` order.
    - `variable_names`: the feature names, in column order of `X`.
    - `n_features`: the required number of columns, or None when the names were
      inferred (then `X` may have more columns).
    - `trees`: the source trees (a `Tree` export), else None; `.sympy()` then goes
      through `tree_to_sympy`, as the regressor's `sympy()` does.
    """

    exprs: tuple[sympy.Expr, ...]
    heads: Mapping
    values: np.ndarray
    constant_names: tuple[str, ...]
    variable_names: tuple[str, ...]
    n_features: int | None
    operators: OperatorSet | None
    trees: tuple[Tree, ...] | None
    multi_output: bool

    def used_variables(self) -> frozenset[str]:
        names = set(self.variable_names)
        return frozenset(s.name for e in self.exprs for s in e.free_symbols if s.name in names)

    def sympy(self, values, dtype):
        """The SymPy expression(s) with `values` for the constants.

        Constants print as the shortest decimal that rounds to them in `dtype`.
        """
        values = [constant_value(v, dtype) for v in np.asarray(values, np.float64).reshape(-1)]
        if self.trees is not None:
            out, start = [], 0
            for tree in self.trees:
                k = int((tree.op == CONST).sum())
                t = tree.with_constants(np.asarray(values[start:start + k], np.float64))
                out.append(tree_to_sympy(t, self.operators, self.variable_names))
                start += k
        else:
            subs = {sympy.Symbol(n): _sympy_number(v) for n, v in zip(self.constant_names, values, strict=True)}
            out = [e.xreplace(subs) for e in self.exprs]
        return out if self.multi_output else out[0]


def _constant_prefix(taken: set[str]) -> str:
    return next(p for p in ("c", "c_", "const_", "_c", "__c") if not any(
        re.fullmatch(re.escape(p) + r"\d+", n) for n in taken))


def _tree_expr(tree: Tree, operators: OperatorSet, heads: Mapping, names, const_syms, values):
    stack = []
    for o, a, v in zip(tree.op, tree.arg, tree.value, strict=True):
        if o == VAR:
            stack.append(sympy.Symbol(names[int(a)]))
        elif o == CONST:
            const_syms.append(sympy.Dummy())  # named once the variables are known
            values.append(float(v))
            stack.append(const_syms[-1])
        else:
            op = operators.operator(o)
            args = [stack.pop() for _ in range(op.arity)][::-1]
            stack.append(heads[op.name](*args))
    (expr,) = stack
    return expr


def _strip_floats(expr, const_syms, values):
    """`expr` with every float occurrence replaced by a fresh constant symbol."""
    if isinstance(expr, sympy.Float):
        const_syms.append(sympy.Dummy())
        values.append(float(expr))
        return const_syms[-1]
    if not expr.args or not expr.has(sympy.Float):
        return expr
    args = [_strip_floats(a, const_syms, values) for a in expr.args]
    with sympy.evaluate(False):
        return expr.func(*args)


def _infer_names(exprs) -> tuple[str, ...]:
    symbols = sorted({s.name for e in exprs for s in e.free_symbols})
    bad = [s for s in symbols if not re.fullmatch(r"x\d+", s)]
    if bad:
        raise ValueError(
            f"Cannot tell which column of X the symbol(s) {bad} read: pass "
            "`variable_names` (the feature names in column order), or name the symbols "
            "x0, x1, ..."
        )
    n = max((int(s[1:]) + 1 for s in symbols), default=0)
    return tuple(f"x{i}" for i in range(n))


def make_template(items: Sequence, operators: OperatorSet | None, variable_names) -> Template:
    """A `Template` from SymPy expressions or `Tree`s (all of one kind), one per output."""
    names = _check_names(variable_names)
    multi = not isinstance(items, (Tree, sympy.Basic, str, int, float))
    items = tuple(items) if multi else (items,)
    if not items:
        raise ValueError("Nothing to export: pass at least one expression.")
    is_tree = [isinstance(t, Tree) for t in items]
    if any(is_tree) and not all(is_tree):
        raise TypeError("Export either `Tree`s or SymPy expressions, not a mix of both.")
    const_syms: list = []
    values: list = []
    if all(is_tree):
        if operators is None:
            raise ValueError(
                "Exporting a `Tree` needs its `OperatorSet`: pass `operators=` (the "
                "regressor's `operators_`, or the set the tree was built with)."
            )
        for t in items:
            t.validate(operators)
        n_used = max((int(t.arg[t.op == VAR].max()) + 1 if (t.op == VAR).any() else 0) for t in items)
        if names is not None and len(names) < n_used:
            raise ValueError(
                f"The tree uses feature {n_used - 1} but `variable_names` has only "
                f"{len(names)} names; give one name per feature."
            )
        var_names = names if names is not None else tuple(f"x{i}" for i in range(n_used))
        # One private head per operator, mapped to the operator itself: node for node.
        private = {op.name: sympy.Function(f"_sr_op{i}") for i, op in enumerate(operators.operators)}
        exprs = [_tree_expr(t, operators, private, var_names, const_syms, values) for t in items]
        heads = {f: name for name, f in private.items()}
        trees = items
    else:
        originals = []
        for e in items:
            try:
                originals.append(sympy.sympify(e))
            except (sympy.SympifyError, TypeError) as err:
                raise TypeError(
                    f"Cannot export {e!r}: pass a SymPy expression or a `Tree`."
                ) from err
        exprs = [_strip_floats(e, const_syms, values) for e in originals]
        var_names = names if names is not None else _infer_names(originals)
        unknown = sorted({s.name for e in exprs for s in e.free_symbols} - set(var_names)
                         - {s.name for s in const_syms})
        if unknown:
            raise ValueError(
                f"The expression uses symbol(s) {unknown} that are not in `variable_names` "
                f"{list(var_names)}; add them there."
            )
        heads = sympy_heads(operators)
        trees = None
    # Constant symbols get names that no variable uses.
    prefix = _constant_prefix(set(var_names))
    rename = {s: sympy.Symbol(f"{prefix}{i}") for i, s in enumerate(const_syms)}
    with sympy.evaluate(False):
        exprs = tuple(e.xreplace(rename) for e in exprs)
    return Template(
        exprs=exprs,
        heads=heads,
        values=np.asarray(values, np.float64),
        constant_names=tuple(rename[s].name for s in const_syms),
        variable_names=tuple(var_names),
        n_features=None if names is None else len(names),
        operators=operators,
        trees=trees,
        multi_output=multi,
    )


def function_heads(expr) -> set:
    """Every function head (and special number) occurring in `expr`."""
    out = set()
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, (sympy.Symbol, sympy.Float, sympy.Rational, sympy.NumberSymbol)):
            continue
        if node.args or type(node) in SPECIAL:
            out.add(node.func)
        else:
            out.add(type(node))
    return out

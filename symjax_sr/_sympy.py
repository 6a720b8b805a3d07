"""Trees to SymPy and back, and a direct LaTeX printer.

`tree_to_sympy` applies each operator's `sympy_fn`; a subtree whose arguments are
all numbers is folded in float64 with the operator's NumPy reference instead, so a
domain error gives `nan` (as in the search) rather than a complex number or
SymPy's `ZeroDivisionError` for `1.0 / 0.0`; a `nan` then propagates to the root.

`sympy_to_tree` maps SymPy's canonical forms back onto an operator set: n-ary `Add`
and `Mul` fold into binary nodes, `a + (-1)*b` becomes `a - b`, negative powers
become `/` or `inv`, `x**2`, `x**3`, `x**(1/2)` become `square`, `cube`, `sqrt` when
available, `Max(0, x)` becomes `relu`, `log(x)/log(2)` becomes `log2`, and functions
map through `Operator.sympy_head`; `re(x)` and `conjugate(x)`, which SymPy adds
because plain symbols may be complex, are `x` for the real inputs of a tree. What
the set cannot express raises `ValueError` naming the construct and the operator to add.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence

import numpy as np
import sympy

from ._operators import CONST, OPERATORS, VAR, OperatorSet
from ._snap import closed_form
from ._strings import _check_names, _format_constant
from ._tree import Tree

__all__ = ["tree_to_sympy", "sympy_to_tree", "tree_to_latex"]


def _symbols(tree: Tree, names: tuple[str, ...] | None) -> dict[int, sympy.Symbol]:
    out = {}
    for i in sorted(set(tree.arg[tree.op == VAR].tolist())):
        if names is not None and i >= len(names):
            raise ValueError(
                f"The tree uses feature {i} but `variable_names` has only {len(names)} "
                "names; give one name per feature."
            )
        out[i] = sympy.Symbol(names[i] if names is not None else f"x{i}")
    return out


def _sympy_float(v: float) -> sympy.Expr:
    if math.isnan(v):
        return sympy.nan
    if math.isinf(v):
        return sympy.oo if v > 0 else -sympy.oo
    return sympy.Float(v)


def _fold(op, args: list[sympy.Expr]) -> sympy.Expr:
    # Length-1 arrays, not scalars: the NumPy references are written for arrays.
    vals = [np.full(1, float(a)) for a in args]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.asarray(op.numpy_fn(*vals), dtype=np.float64).reshape(-1)
    return _sympy_float(float(out[0]))


def tree_to_sympy(
    tree: Tree,
    operators: OperatorSet,
    variable_names: Sequence[str] | None = None,
    constants_as_symbols: bool = False,
):
    """The SymPy expression of `tree`.

    **Arguments:**

    - `tree`, `operators`: a valid host `Tree` and its `OperatorSet`.
    - `variable_names`: names of the feature symbols (plain `Symbol`s, as PySR);
      `x0, x1, ...` when None.
    - `constants_as_symbols`: when True, each constant becomes a symbol `c0, c1, ...`
      in postfix (constant slot) order, and the result is `(expr, {symbol: value})`.

    ```python
    ops = make_operator_set(["+", "*"], ["cos"])
    tree_to_sympy(parse_expression("x0 * 2.5 + cos(x1)", ops), ops)  # 2.5*x0 + cos(x1)
    ```
    """
    names = _check_names(variable_names)
    tree.validate(operators)
    syms = _symbols(tree, names)
    taken = {s.name for s in syms.values()}
    prefix = next(p for p in ("c", "c_", "const_", "_c") if not any(
        re.fullmatch(re.escape(p) + r"\d+", n) for n in taken))
    consts: dict[sympy.Symbol, float] = {}
    stack: list[sympy.Expr] = []
    for o, a, v in zip(tree.op, tree.arg, tree.value, strict=True):
        if o == VAR:
            stack.append(syms[int(a)])
        elif o == CONST:
            if constants_as_symbols:
                c = sympy.Symbol(f"{prefix}{len(consts)}")
                consts[c] = float(v)
                stack.append(c)
            else:  # pi/2 for a constant snapped to it (`_snap.py`)
                stack.append(closed_form(float(v)) or _sympy_float(float(v)))
        else:
            op = operators.operator(o)
            args = [stack.pop() for _ in range(op.arity)][::-1]
            if all(isinstance(x, sympy.Number) for x in args):
                stack.append(_fold(op, args))
            elif any(x.has(sympy.nan, sympy.zoo) for x in args):
                # A NaN intermediate makes the expression non-finite for every input
                # (as in the search); SymPy's Max/Min would reject it.
                stack.append(sympy.nan)
            else:
                try:
                    stack.append(op.sympy_fn(*args))
                except ZeroDivisionError:  # SymPy's `Mod(x, 0.0)`; IEEE gives NaN.
                    stack.append(sympy.nan)
                except ValueError:
                    # `Max`/`Min` reject an argument SymPy proves non-real, such as
                    # `acosh(Min(-1, x))`: NaN for every real input, so NaN here.
                    if not any(x.is_extended_real is False for x in args):
                        raise
                    stack.append(sympy.nan)
    (expr,) = stack
    return (expr, consts) if constants_as_symbols else expr


# ---------------------------------------------------------------------------------
# SymPy to tree. Nodes are nested tuples: ("const", v), ("var", i), (name, *children).


class _FromSympy:
    def __init__(self, operators: OperatorSet, names: tuple[str, ...] | None):
        self.ops = operators
        self.names = names
        self.heads = {}
        for op in operators.operators:
            head = op.sympy_head
            if head is not None and head not in (sympy.Add, sympy.Mul, sympy.Pow):
                self.heads.setdefault(head, op.name)

    def has(self, name: str) -> bool:
        return name in self.ops

    def need(self, name: str, construct, *alternatives: str) -> None:
        """Raise unless `name` is in the set, naming it (and `alternatives`) as the fix."""
        if self.has(name):
            return
        fixes = []
        for n in (name, *alternatives):
            kind = "binary_operators" if OPERATORS[n].arity == 2 else "unary_operators"
            fixes.append(f"{n!r} to `{kind}`")
        raise ValueError(
            f"The operator set ({', '.join(self.ops.names)}) cannot express `{construct}`: "
            f"add {' or '.join(fixes)}."
        )

    # -- leaves

    def symbol(self, s: sympy.Symbol):
        if self.names is not None:
            if s.name in self.names:
                return ("var", self.names.index(s.name))
            valid = ", ".join(self.names)
        else:
            m = re.fullmatch(r"x(\d+)", s.name)
            if m:
                return ("var", int(m.group(1)))
            valid = "x0, x1, ... (pass `variable_names` for other names)"
        raise ValueError(f"Unknown symbol {s.name!r} in the SymPy expression; variables are {valid}.")

    def number(self, e):
        if e is sympy.zoo:
            return ("const", math.inf)
        v = e.evalf()
        if v.has(sympy.I) or v.is_extended_real is False:
            raise ValueError(
                f"The SymPy expression contains the complex constant {e}; trees hold real "
                "constants only."
            )
        return ("const", float(v))

    # -- structure

    def convert(self, e):
        if isinstance(e, sympy.Symbol):
            return self.symbol(e)
        if e.is_number and not e.has(sympy.core.function.AppliedUndef):
            return self.number(e)
        if isinstance(e, sympy.Add):
            return self.add(e)
        if isinstance(e, sympy.Mul):
            return self.mul(e)
        if isinstance(e, sympy.Pow):
            return self.pow(e.base, e.exp)
        if isinstance(e, (sympy.Max, sympy.Min)):
            return self.maxmin(e)
        if isinstance(e, (sympy.re, sympy.conjugate)):
            # SymPy adds these because plain symbols may be complex; trees are real.
            return self.convert(e.args[0])
        if isinstance(e, sympy.im):
            return ("const", 0.0)
        if isinstance(e, sympy.log) and len(e.args) == 1:
            (arg,) = e.args
            if self.has("log1p") and isinstance(arg, sympy.Add) and sympy.S.One in arg.args:
                return ("log1p", self.convert(arg - 1))
        if isinstance(e, sympy.exp) and not self.has("exp") and self.has("^"):
            return ("^", ("const", math.e), self.convert(e.args[0]))
        head = e.func
        if head in self.heads:
            return (self.heads[head], *(self.convert(a) for a in e.args))
        for op in OPERATORS.values():
            if op.sympy_head is head:
                self.need(op.name, e)
        raise ValueError(
            f"No operator maps to the SymPy construct `{head.__name__}` (in `{e}`); add a "
            "custom operator with its `extra_sympy_mappings` entry."
        )

    def negate(self, node, construct):
        if node[0] == "const":
            return ("const", -node[1])
        if self.has("neg"):
            return ("neg", node)
        if self.has("*"):
            return ("*", ("const", -1.0), node)
        if self.has("-"):
            return ("-", ("const", 0.0), node)
        self.need("neg", construct)

    def add(self, e):
        # Positive terms first (so `-` can take the rest), numbers last, as SymPy prints.
        terms = sorted(e.args, key=lambda t: (t.could_extract_minus_sign(), t.is_Number))
        node = self.convert(terms[0])
        for t in terms[1:]:
            if self.has("-") and t.could_extract_minus_sign():
                node = ("-", node, self.convert(-t))
            else:
                self.need("+", e)
                node = ("+", node, self.convert(t))
        return node

    def product(self, factors, construct):
        """Fold factors (SymPy expressions or converted nodes) into `*` nodes."""
        nodes = [f if isinstance(f, tuple) else self.convert(f) for f in factors]
        node = nodes[0]
        for n in nodes[1:]:
            self.need("*", construct)
            node = ("*", node, n)
        return node

    def reciprocal(self, node, construct):
        if self.has("inv"):
            return ("inv", node)
        self.need("/", construct)
        return ("/", ("const", 1.0), node)

    def mul(self, e):
        coeff = sympy.S.One
        factors = []
        for f in e.args:
            if f.is_Number:
                coeff *= f
            else:
                factors.append(f)
        factors = self.logs(factors)
        num, den = [], []
        for f in factors:
            if isinstance(f, sympy.Pow) and self.is_division(f.exp):
                den.append(sympy.Pow(f.base, -f.exp))
            else:
                num.append(f)
        negative = coeff.is_negative is True
        if negative:
            coeff = -coeff
        if float(coeff) != 1.0:  # SymPy >= 1.13: Float(1.0) != Integer(1)
            num.insert(0, coeff)
        if not num:
            node = self.reciprocal(self.product(den, e), e)
        elif not den:
            node = self.product(num, e)
        elif self.has("/"):
            node = ("/", self.product(num, e), self.product(den, e))
        else:
            node = ("*", self.product(num, e), ("inv", self.product(den, e)))
        return self.negate(node, e) if negative else node

    def logs(self, factors):
        """Pair `log(x)` with `1/log(2)` (`1/log(10)`) into a `log2(x)` (`log10(x)`) node."""
        out = list(factors)
        for name, base in (("log2", 2), ("log10", 10)):
            inv_log = sympy.Pow(sympy.log(base), -1)
            while self.has(name) and inv_log in out:
                logs = [f for f in out if isinstance(f, sympy.log) and len(f.args) == 1]
                if not logs:
                    break
                out.remove(inv_log)
                out.remove(logs[0])
                out.append((name, self.convert(logs[0].args[0])))
        return out

    def is_division(self, ex) -> bool:
        """Whether `b**ex` maps to `/` or `inv`: a negative rational exponent (SymPy's
        form of a division), or any negative one when `^` is missing. `x ** -1000.0`
        and `0 ** (-y)` stay powers: as reciprocals they overflow where they did not."""
        if not ex.could_extract_minus_sign() or not (self.has("/") or self.has("inv")):
            return False
        return ex.is_Rational or not self.has("^")

    def pow(self, base, ex):
        if base is sympy.E:
            return self.convert(sympy.exp(ex))
        if self.is_division(ex):
            return self.reciprocal(self.convert(sympy.Pow(base, -ex)), sympy.Pow(base, ex))
        return self.power(self.convert(base), ex, sympy.Pow(base, ex, evaluate=False))

    def power(self, b, ex, construct):
        if ex.is_Number and float(ex) == 1.0:
            return b
        if ex == 2 and self.has("square"):
            return ("square", b)
        if ex == 3 and self.has("cube"):
            return ("cube", b)
        if ex == sympy.Rational(1, 2) and self.has("sqrt"):
            return ("sqrt", b)
        if self.has("^"):
            return ("^", b, self.convert(ex))
        if ex.is_Number and ex > 1 and float(ex) == int(ex):
            n = int(ex)
            if n % 2 == 0 and self.has("square"):
                return ("square", self.power(b, sympy.Integer(n // 2), construct))
            if n % 3 == 0 and self.has("cube"):
                return ("cube", self.power(b, sympy.Integer(n // 3), construct))
            self.need("*", construct)
            return ("*", self.power(b, sympy.Integer(n - 1), construct), b)
        if isinstance(ex, sympy.Rational) and ex.q == 2 and ex > 0 and self.has("sqrt"):
            return self.power(("sqrt", b), sympy.Integer(ex.p), construct)
        if ex.could_extract_minus_sign():
            self.need("^", construct, "/", "inv")
        if ex == sympy.Rational(1, 2):
            self.need("^", construct, "sqrt")
        self.need("^", construct)

    def maxmin(self, e):
        name = "max" if isinstance(e, sympy.Max) else "min"
        args = list(e.args)
        if name == "max" and sympy.S.Zero in args and self.has("relu"):
            args.remove(sympy.S.Zero)
            return ("relu", self.convert(sympy.Max(*args)))
        self.need(name, e)
        node = self.convert(args[0])
        for a in args[1:]:
            node = (name, node, self.convert(a))
        return node


def _flatten(node, operators: OperatorSet, out):
    kind = node[0]
    if kind == "const":
        out.append((CONST, 0, node[1]))
    elif kind == "var":
        out.append((VAR, node[1], 0.0))
    else:
        for child in node[1:]:
            _flatten(child, operators, out)
        out.append((operators.opcode(kind), 0, 0.0))


def sympy_to_tree(
    expr,
    operators: OperatorSet,
    variable_names: Sequence[str] | None = None,
    *,
    dtype=np.float64,
) -> Tree:
    """Map a SymPy expression onto a host `Tree` over `operators`.

    **Arguments:**

    - `expr`: a SymPy expression (or anything `sympy.sympify` accepts as a number).
    - `operators`: the target `OperatorSet`.
    - `variable_names`: the feature names, mapped to feature indices in order;
      `x0, x1, ...` when None.
    - `dtype`: float dtype of the tree's constants.

    Rationals, `pi`, `E` and other closed-form numbers become float constants.
    Raises `ValueError` naming a construct the operator set cannot express and the
    operator to add.

    ```python
    ops = make_operator_set(["+", "-", "*", "/"], ["square", "cos"])
    sympy_to_tree(sympy.sympify("x0**2 - cos(x1)/3"), ops)
    ```
    """
    names = _check_names(variable_names)
    expr = sympy.sympify(expr)
    node = _FromSympy(operators, names).convert(expr)
    rows: list = []
    _flatten(node, operators, rows)
    op, arg, value = zip(*rows, strict=True)
    with np.errstate(over="ignore"):
        values = np.array(value, dtype=np.float64).astype(dtype)
    return Tree(np.array(op, np.int32), np.array(arg, np.int32), values)


# ---------------------------------------------------------------------------------
# LaTeX

# Precedence of a LaTeX fragment: what binds it to its neighbours.
_ADD, _MUL, _NEG, _POW, _ATOM, _LEAF = range(6)


def _template_info(template: str, arity: int):
    """Classify a LaTeX template: its own precedence and, per argument, its context.

    An argument inside `{...}` or `\\left...\\right` is delimited and never needs
    parentheses; a bare one does, depending on the template's precedence.
    """
    marks = [f"\x00{i}\x00" for i in range(arity)]
    text = template.format(*marks)
    contexts = []
    for i, m in enumerate(marks):
        pos = text.index(m)
        before, after = text[:pos], text[pos + len(m):]
        braced = before.endswith("{") and after.startswith("}")
        in_left = before.count(r"\left") > before.count(r"\right")
        if braced or in_left:
            contexts.append("delimited")
        elif after.lstrip().startswith("^"):
            contexts.append("base")
        elif i == 0 and before.strip() == "":
            contexts.append("left")
        else:
            contexts.append("right")
    skeleton = re.sub(r"\\left.*\\right.|\{[^{}]*\}", "", text)
    for m in marks:
        skeleton = skeleton.replace(m, " ")
    if re.search(r"\s[+-]\s", skeleton):
        prec = _ADD
    elif re.search(r"\\cdot|\\times|\\bmod", skeleton):
        prec = _MUL
    elif skeleton.strip().startswith("-"):
        prec = _NEG
    elif "^" in skeleton:
        prec = _POW
    else:
        prec = _ATOM
    return prec, contexts


def _needs_parens(context: str, prec: int, child: int) -> bool:
    if context == "delimited":
        return False
    if context == "base":
        return child < _LEAF
    if prec == _ADD:
        return context == "right" and child in (_ADD, _NEG)
    if prec == _MUL:
        return child == _ADD if context == "left" else child in (_ADD, _NEG, _MUL)
    if prec == _NEG:
        return child in (_ADD, _NEG)
    return child < _LEAF  # a bare argument of another kind of template


def _latex_constant(v: float, dtype, precision: int) -> tuple[str, int]:
    if math.isnan(v):
        return r"\mathrm{NaN}", _LEAF
    if math.isinf(v):
        return (r"\infty", _LEAF) if v > 0 else (r"-\infty", _NEG)
    s = _format_constant(v, dtype, precision)
    mantissa, _, exponent = s.partition("e")
    prec = _LEAF
    if exponent:
        s = rf"{mantissa} \cdot 10^{{{int(exponent)}}}"
        prec = _MUL
    if s.startswith("-"):
        prec = _NEG
    return s, prec


def tree_to_latex(
    tree: Tree,
    operators: OperatorSet,
    variable_names: Sequence[str] | None = None,
    precision: int = 3,
) -> str:
    """LaTeX of `tree` from the operators' templates, parenthesised where needed.

    Constants print with `precision` significant digits, large and small ones as
    `1.5 \\cdot 10^{-7}`; variables as `x_{0}` or `variable_names` (underscores and
    multi-letter names are kept readable with `\\mathrm`).

    ```python
    ops = make_operator_set(["+", "*"], ["cos"])
    tree_to_latex(parse_expression("(x0 + 1) * cos(x1)", ops), ops)
    # '\\left(x_{0} + 1.0\\right) \\cdot \\cos{\\left(x_{1} \\right)}'
    ```
    """
    names = _check_names(variable_names)
    tree.validate(operators)
    dtype = tree.value.dtype
    info = {}
    stack: list[tuple[str, int]] = []
    for o, a, v in zip(tree.op, tree.arg, tree.value, strict=True):
        if o == VAR:
            stack.append((_latex_variable(int(a), names), _LEAF))
        elif o == CONST:
            stack.append(_latex_constant(float(v), dtype, precision))
        else:
            op = operators.operator(o)
            if o not in info:
                info[o] = _template_info(op.latex, op.arity)
            prec, contexts = info[o]
            args = [stack.pop() for _ in range(op.arity)][::-1]
            texts = [
                rf"\left({s}\right)" if _needs_parens(ctx, prec, p) else s
                for (s, p), ctx in zip(args, contexts, strict=True)
            ]
            stack.append((op.latex.format(*texts), prec))
    return stack[0][0]


def _latex_variable(i: int, names) -> str:
    if names is None:
        return f"x_{{{i}}}"
    if i >= len(names):
        raise ValueError(
            f"The tree uses feature {i} but `variable_names` has only {len(names)} names."
        )
    name = names[i]
    if len(name) == 1:
        return name
    head, _, sub = name.partition("_")
    if sub and "_" not in sub:
        head_tex = head if len(head) == 1 else rf"\mathrm{{{head}}}"
        return rf"{head_tex}_{{\mathrm{{{sub}}}}}"
    escaped = name.replace("_", r"\_")
    return rf"\mathrm{{{escaped}}}"

"""Equation strings as PySR writes them into `hall_of_fame.csv`, both ways.

Printing follows DynamicExpressions' `string_tree`: every infix binary operator is
parenthesised, `((x0 * 2.5) + cos(x1))`; other operators are calls, `max(x0, x1)`,
`cos(x1)`. Constants print with the shortest text that reads back to the same value
of the tree's float dtype, so `parse_expression(tree_to_string(t)) == t` exactly.

Parsing is a hand-written tokenizer and precedence-climbing parser (no `eval`, no
SymPy), so PySR users can load their old results:

    expr  := term (("+" | "-") term)*
    term  := unary (("*" | "/") unary)*
    unary := ("-" | "+") unary | power
    power := atom (("^" | "**") unary)?        right-associative, as Julia's `^`
    atom  := number | name | name "(" expr ("," expr)* ")" | "(" expr ")"

Unary minus: on a constant (`-2.5`, `(-0.5)`, `-Inf`) it folds into the constant;
on anything else it becomes `neg(x)` when `neg` is in the operator set, else
`(-1.0 * x)`. So `-x0 ^ 2` is `neg(x0 ^ 2)`, as in Julia and Python.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Sequence

import numpy as np

from ._operators import (
    CONST,
    OPERATORS,
    VAR,
    Operator,
    OperatorSet,
    get_operator,
    make_operator_set,
)
from ._tree import Tree

__all__ = ["tree_to_string", "parse_expression", "infer_operator_set"]

_INFIX_ALIASES = {"**": "^"}
# Julia spellings of non-finite literals.
_NONFINITE = {
    "Inf": np.inf, "Inf16": np.inf, "Inf32": np.inf, "Inf64": np.inf,
    "NaN": np.nan, "NaN16": np.nan, "NaN32": np.nan, "NaN64": np.nan,
    "inf": np.inf, "nan": np.nan,
}


# ---------------------------------------------------------------------------------
# Printing


def _format_constant(c, dtype: np.dtype, precision: int | None) -> str:
    c = dtype.type(c)
    if np.isnan(c):
        return "NaN"
    if np.isinf(c):
        return "Inf" if c > 0 else "-Inf"
    if precision is not None:
        s = f"{float(c):.{int(precision)}g}"
    elif dtype == np.float64:
        s = repr(float(c))
    else:
        s = str(c)  # NumPy prints the shortest text that round-trips this dtype.
    if not any(ch in s for ch in ".en"):
        s += ".0"  # keep PySR's float look: `3.0`, not `3`.
    return s


def _check_names(variable_names: Sequence[str] | None) -> tuple[str, ...] | None:
    if variable_names is None:
        return None
    names = tuple(variable_names)
    bad = [n for n in names if not isinstance(n, str) or not n.isidentifier()]
    if bad:
        raise ValueError(
            f"`variable_names` must be identifiers (letters, digits, underscores), got "
            f"{bad!r}; rename them, e.g. 'x_1' instead of 'x 1'."
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"`variable_names` lists {dupes!r} more than once; names must be unique.")
    return names


def _var_name(i: int, names: tuple[str, ...] | None) -> str:
    if names is None:
        return f"x{i}"
    if i >= len(names):
        raise ValueError(
            f"The tree uses feature {i} but `variable_names` has only {len(names)} "
            "names; give one name per feature."
        )
    return names[i]


def tree_to_string(
    tree: Tree,
    operators: OperatorSet,
    variable_names: Sequence[str] | None = None,
    precision: int | None = None,
) -> str:
    """The PySR equation string of `tree`, e.g. `((x0 * 2.5) + cos(x1))`.

    **Arguments:**

    - `tree`: a valid host `Tree`.
    - `operators`: the `OperatorSet` its opcodes refer to.
    - `variable_names`: feature names; `x0, x1, ...` when None.
    - `precision`: significant digits of constants; when None, the shortest text that
      reads back to exactly the same value of the tree's float dtype.

    ```python
    ops = make_operator_set(["+", "*"], ["cos"])
    tree_to_string(parse_expression("x0 * 2.5 + cos(x1)", ops), ops)
    # '((x0 * 2.5) + cos(x1))'
    ```
    """
    names = _check_names(variable_names)
    tree.validate(operators)
    dtype = tree.value.dtype
    # Each stack entry: (text, is a negative constant); the latter needs parentheses
    # as the base of `^`, since `-2.5 ^ x` means `-(2.5 ^ x)`.
    stack: list[tuple[str, bool]] = []
    for o, a, v in zip(tree.op, tree.arg, tree.value, strict=True):
        if o == VAR:
            stack.append((_var_name(int(a), names), False))
        elif o == CONST:
            s = _format_constant(v, dtype, precision)
            stack.append((s, s.startswith("-")))
        else:
            op = operators.operator(o)
            args = [stack.pop() for _ in range(op.arity)][::-1]
            if op.infix is not None:
                (left, neg_left), (right, _) = args
                if op.infix == "^" and neg_left:
                    left = f"({left})"
                stack.append((f"({left} {op.infix} {right})", False))
            else:
                stack.append((f"{op.name}({', '.join(s for s, _ in args)})", False))
    return stack[0][0]


# ---------------------------------------------------------------------------------
# Tokenizing and parsing to a small syntax tree


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eEf][+-]?\d+)?)
  | (?P<name>[^\W\d]\w*)
  | (?P<op>\*\*|[-+*/^(),])
    """,
    re.VERBOSE,
)


@dataclasses.dataclass(frozen=True)
class _Tok:
    kind: str  # "num", "name", "op", "end"
    text: str
    pos: int


@dataclasses.dataclass(frozen=True)
class _Num:
    text: str
    value: float | None  # set for Inf/NaN
    pos: int


@dataclasses.dataclass(frozen=True)
class _Name:
    name: str
    pos: int


@dataclasses.dataclass(frozen=True)
class _Call:
    name: str  # an infix symbol for binary operators, else the function name
    args: tuple
    pos: int
    infix: bool = False


@dataclasses.dataclass(frozen=True)
class _Neg:
    arg: object
    pos: int


def _error(string: str, pos: int, message: str) -> ValueError:
    caret = " " * pos + "^"
    return ValueError(f"{message} (at position {pos})\n  {string}\n  {caret}")


def _tokenize(string: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(string):
        m = _TOKEN.match(string, pos)
        if m is None:
            raise _error(
                string, pos,
                f"Unexpected character {string[pos]!r} in equation string; expected a "
                "number, a name, one of `+ - * / ^ **`, parentheses or a comma",
            )
        if m.lastgroup != "ws":
            toks.append(_Tok(m.lastgroup, m.group(), pos))
        pos = m.end()
    toks.append(_Tok("end", "", len(string)))
    return toks


class _Parser:
    def __init__(self, string: str):
        if not isinstance(string, str):
            raise TypeError(f"Equation strings are `str`, got {type(string).__name__}: {string!r}.")
        self.string = string
        self.toks = _tokenize(string)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, text: str, what: str) -> _Tok:
        t = self.tok
        if t.text != text or t.kind != "op":
            found = "the end of the string" if t.kind == "end" else repr(t.text)
            raise _error(self.string, t.pos, f"Expected {what}, found {found}")
        return self.take()

    def parse(self):
        if self.tok.kind == "end":
            raise ValueError("Empty equation string: nothing to parse.")
        node = self.expr()
        t = self.tok
        if t.kind != "end":
            what = "unbalanced ')'" if t.text == ")" else f"unexpected {t.text!r}"
            raise _error(
                self.string, t.pos,
                f"Trailing text after a complete expression: {what}; an operator may be missing",
            )
        return node

    def expr(self):
        node = self.term()
        while self.tok.kind == "op" and self.tok.text in "+-":
            t = self.take()
            node = _Call(t.text, (node, self.term()), t.pos, infix=True)
        return node

    def term(self):
        node = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            t = self.take()
            node = _Call(t.text, (node, self.unary()), t.pos, infix=True)
        return node

    def unary(self):
        t = self.tok
        if t.kind == "op" and t.text in "+-":
            self.take()
            arg = self.unary()
            return _Neg(arg, t.pos) if t.text == "-" else arg
        return self.power()

    def power(self):
        node = self.atom()
        if self.tok.kind == "op" and self.tok.text in ("^", "**"):
            t = self.take()
            node = _Call("^", (node, self.unary()), t.pos, infix=True)
        return node

    def atom(self):
        t = self.take()
        if t.kind == "num":
            return _Num(t.text, None, t.pos)
        if t.kind == "name":
            if self.tok.kind == "op" and self.tok.text == "(":
                self.take()
                args = [self.expr()]
                while self.tok.kind == "op" and self.tok.text == ",":
                    self.take()
                    args.append(self.expr())
                self.expect(")", f"')' closing the call to {t.text!r} opened at position {t.pos}")
                return _Call(t.text, tuple(args), t.pos)
            return _Name(t.text, t.pos)
        if t.kind == "op" and t.text == "(":
            node = self.expr()
            self.expect(")", f"')' closing the '(' at position {t.pos}")
            return node
        found = "the end of the string" if t.kind == "end" else repr(t.text)
        raise _error(self.string, t.pos, f"Expected a number, a name or '(', found {found}")


# ---------------------------------------------------------------------------------
# Lowering the syntax tree onto an operator set


def _parse_number(text: str, dtype) -> float:
    with np.errstate(over="ignore", under="ignore"):
        if "f" in text:  # Julia Float32 literal: 2.5f0, 1f-3
            return dtype.type(np.float32(text.replace("f", "e")))
        if dtype == np.float32:
            return np.float32(text)
        return dtype.type(float(text))


class _Lowering:
    def __init__(self, string, operators: OperatorSet, names, dtype):
        self.string = string
        self.operators = operators
        self.names = names
        self.index = {n: i for i, n in enumerate(names)} if names is not None else None
        self.dtype = dtype
        self.op: list[int] = []
        self.arg: list[int] = []
        self.value: list[float] = []

    def emit(self, op: int, arg: int = 0, value=0.0):
        self.op.append(op)
        self.arg.append(arg)
        self.value.append(value)

    def constant_value(self, node):
        """The value of a constant leaf (number or Inf/NaN), else None."""
        if isinstance(node, _Num):
            return _parse_number(node.text, self.dtype)
        if isinstance(node, _Name) and node.name in _NONFINITE and not self.is_variable(node.name):
            return self.dtype.type(_NONFINITE[node.name])
        if isinstance(node, _Neg):
            inner = self.constant_value(node.arg)
            return None if inner is None else -inner
        return None

    def is_variable(self, name: str) -> bool:
        if self.index is not None:
            return name in self.index
        return re.fullmatch(r"x\d+", name) is not None

    def variable(self, node: _Name) -> int:
        if self.index is not None:
            if node.name in self.index:
                return self.index[node.name]
            valid = list(self.index)
        else:
            m = re.fullmatch(r"x(\d+)", node.name)
            if m:
                return int(m.group(1))
            valid = ["x0", "x1", "..."]
        close = difflib.get_close_matches(node.name, valid, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        where = (
            f"`variable_names` ({', '.join(valid)})" if self.index is not None
            else "the default names x0, x1, ... (pass `variable_names` for others)"
        )
        raise _error(self.string, node.pos, f"Unknown variable {node.name!r}.{hint} Variables are {where}")

    def lower(self, node):
        c = self.constant_value(node)
        if c is not None:
            self.emit(CONST, 0, c)
        elif isinstance(node, _Name):
            self.emit(VAR, self.variable(node))
        elif isinstance(node, _Neg):
            self.negate(node)
        else:
            opcode = self.opcode(node)
            for a in node.args:
                self.lower(a)
            self.emit(opcode)

    def negate(self, node: _Neg):
        if "neg" in self.operators:
            self.lower(node.arg)
            self.emit(self.operators.opcode("neg"))
        elif "*" in self.operators:
            self.emit(CONST, 0, self.dtype.type(-1.0))
            self.lower(node.arg)
            self.emit(self.operators.opcode("*"))
        else:
            raise _error(
                self.string, node.pos,
                "Unary minus on a non-constant needs `neg` (in `unary_operators`) or `*` "
                "(in `binary_operators`) in the operator set; add one of them",
            )

    def opcode(self, node: _Call) -> int:
        op = _lookup(self.string, node, self.operators)
        return self.operators.opcode(op.name)


def _lookup(string: str, node: _Call, operators: OperatorSet | None) -> Operator:
    """The operator a call or infix node names, checking membership and arity."""
    name = _INFIX_ALIASES.get(node.name, node.name)
    kind = "binary_operators" if len(node.args) == 2 else "unary_operators"
    if operators is not None:
        for op in operators.operators:
            if op.name == name or name in op.aliases:
                break
        else:
            op = None
    else:
        op = None
    if op is None:
        try:
            op = get_operator(name)
        except ValueError:
            known = [] if operators is None else [o.name for o in operators.operators if o.infix is None]
            known += [n for n in list(OPERATORS) + [a for o in OPERATORS.values() for a in o.aliases]
                      if n.isidentifier() and n not in known]
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise _error(
                string, node.pos,
                f"Unknown function {name!r}.{hint} A custom operator must be in the operator "
                f"set: pass the JAX callable in `{kind}` (with its `extra_sympy_mappings`)",
            ) from None
        if operators is not None:
            listed = "binary_operators" if op.arity == 2 else "unary_operators"
            raise _error(
                string, node.pos,
                f"Operator {op.name!r} is not in this operator set ({', '.join(operators.names)}); "
                f"add {op.name!r} to `{listed}`",
            )
    if len(node.args) != op.arity:
        raise _error(
            string, node.pos,
            f"`{op.name}` takes {op.arity} argument(s), got {len(node.args)}",
        )
    return op


def parse_expression(
    string: str,
    operators: OperatorSet,
    variable_names: Sequence[str] | None = None,
    *,
    dtype=None,
) -> Tree:
    """Parse a PySR equation string into a host `Tree` over `operators`.

    **Arguments:**

    - `string`: e.g. `"((x0 * 2.5) + cos(x1))"`, `"square(x1) * 3.2f0"`, `"x0 ** 2"`.
      Operator names and aliases (`safe_log`, `pow`) are accepted; numbers may use Julia
      forms (`1.0e-5`, `2.5f0`, `1f-3`, `Inf`, `NaN`, integers).
    - `operators`: the `OperatorSet` of the tree (see `infer_operator_set` when unknown).
    - `variable_names`: feature names; `x0, x1, ...` when None.
    - `dtype`: float dtype of the constants; None means float32 when a literal uses
      Julia's Float32 form (`2.5f0`), else float64. Pass the dtype the string was
      printed from to read constants back exactly.

    Raises `ValueError` with the position of the problem for bad syntax, unknown
    functions or variables ("Did you mean ..."), an operator missing from the set
    (saying which list to add it to) and a wrong number of arguments.

    ```python
    ops = make_operator_set(["+", "*"], ["cos"])
    tree = parse_expression("((x0 * 2.5) + cos(x1))", ops)
    ```
    """
    names = _check_names(variable_names)
    parser = _Parser(string)
    ast = parser.parse()
    if dtype is None:
        julia32 = any(t.kind == "num" and "f" in t.text for t in parser.toks)
        dtype = np.float32 if julia32 else np.float64
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"`dtype` must be a float dtype, got {dtype}.")
    low = _Lowering(string, operators, names, dtype)
    low.lower(ast)
    return Tree(np.array(low.op, np.int32), np.array(low.arg, np.int32), np.array(low.value, dtype))


def _walk(node) -> Iterable:
    yield node
    for child in getattr(node, "args", ()) or ((node.arg,) if isinstance(node, _Neg) else ()):
        yield from _walk(child)


def infer_operator_set(strings: Iterable[str]) -> OperatorSet:
    """The operator set that a list of PySR equation strings uses.

    Lets a PySR user load a `hall_of_fame.csv` without knowing the search options.
    Operators come in registry order, binary before unary. A unary minus on a
    non-constant adds `neg`. Custom operators cannot be inferred: build the set with
    `make_operator_set` and the callables instead.

    ```python
    ops = infer_operator_set(["((x0 * 2.5) + cos(x1))", "safe_log(x0)"])
    ops.names  # ('+', '*', 'cos', 'log')
    ```
    """
    if isinstance(strings, str):
        strings = [strings]
    used: set[str] = set()
    for s in strings:
        ast = _Parser(s).parse()
        for node in _walk(ast):
            if isinstance(node, _Call):
                used.add(_lookup(s, node, None).name)
            elif isinstance(node, _Neg) and not _constant_ast(node):
                used.add("neg")
    if not used:
        raise ValueError(
            "The equation strings use no operators (only constants and variables); "
            "give the operator set explicitly with `make_operator_set`."
        )
    order = list(OPERATORS)
    ordered = sorted(used, key=order.index)
    return make_operator_set(
        [n for n in ordered if OPERATORS[n].arity == 2], [n for n in ordered if OPERATORS[n].arity == 1]
    )


def _constant_ast(node) -> bool:
    if isinstance(node, _Num):
        return True
    if isinstance(node, _Name):
        return node.name in _NONFINITE
    if isinstance(node, _Neg):
        return _constant_ast(node.arg)
    return False


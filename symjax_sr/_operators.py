"""Operators: one immutable record per primitive, and the ordered set a search uses.

Semantics follow PySR / DynamicExpressions.jl: an operator applied outside its
domain (log of a negative, sqrt of a negative, 0/0, overflow) yields a non-finite
value, which makes the whole expression's loss +inf. There are no "protected"
variants that silently return a finite value.

Every JAX implementation keeps finite gradients wherever its value is finite: the
evaluators feed unselected operators a `safe_input` inside their domain
(the double-`where` trick), and the few operators whose plain derivative breaks at a
finite value (`^` with a negative base) guard it themselves.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import sympy

__all__ = [
    "Operator",
    "OperatorSet",
    "OPERATORS",
    "PAD",
    "VAR",
    "CONST",
    "FIRST_OP",
    "get_operator",
    "make_operator_set",
]

# Opcodes of the tree encoding. Operators of an `OperatorSet` start at FIRST_OP.
PAD, VAR, CONST, FIRST_OP = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True, eq=False)
class Operator:
    """One primitive: its name as PySR spells it and every implementation of it.

    **Arguments:**

    - `name`: the name PySR uses (`"+"`, `"cos"`, `"square"`, ...).
    - `arity`: 1 or 2.
    - `jax_fn`: elementwise JAX implementation.
    - `numpy_fn`: elementwise NumPy implementation, the independent reference.
    - `sympy_fn`: builds the SymPy expression from SymPy arguments.
    - `latex`: a `str.format` template over the arguments' LaTeX (`{0}`, `{1}`).
    - `complexity`: default complexity of one node of this operator.
    - `infix`: the infix symbol for the equation string (`+ - * / ^`), else None.
    - `safe_input`: a value inside the domain, fed to the operator where it is not
      selected so that its gradient stays finite.
    - `aliases`: other names accepted when looking the operator up.
    """

    name: str
    arity: int
    jax_fn: Callable[..., Any]
    numpy_fn: Callable[..., Any]
    sympy_fn: Callable[..., Any]
    latex: str
    complexity: float = 1.0
    infix: str | None = None
    safe_input: float = 0.5
    aliases: tuple[str, ...] = ()

    def __post_init__(self):
        if self.arity not in (1, 2):
            raise ValueError(
                f"Operator `{self.name}` has arity {self.arity}; only unary (1) and "
                "binary (2) operators are supported."
            )
        if not self.name.isidentifier() and self.infix is None:
            raise ValueError(
                f"Operator name {self.name!r} is not a valid identifier; use letters, "
                "digits and underscores so that equation strings can be parsed back."
            )

    def __repr__(self) -> str:
        return f"Operator({self.name!r}, arity={self.arity})"

    # Equal when they compute the same thing: a custom operator rebuilt from the same
    # function (a second `fit`, an unpickled checkpoint) equals the first one.
    def __eq__(self, other) -> bool:
        if not isinstance(other, Operator):
            return NotImplemented
        return (self.name, self.arity, self.jax_fn) == (other.name, other.arity, other.jax_fn)

    def __hash__(self) -> int:
        return hash((self.name, self.arity))

    def __reduce__(self):
        # Built-ins pickle by name; custom operators by their JAX function (pickled by
        # reference, so it must be defined at module level) and their SymPy form as a
        # `sympy.Lambda`, which pickles where the user's `lambda` would not.
        if OPERATORS.get(self.name) is self:
            return (get_operator, (self.name,))
        args = sympy.symbols(f"_a0:{self.arity}")
        try:
            mapping = sympy.Lambda(args, self.sympy_fn(*args))
        except Exception:  # noqa: BLE001 - keep the original; pickle reports what fails
            mapping = self.sympy_fn
        return (_custom_operator, (self.jax_fn, self.arity, {self.name: mapping}))

    @property
    def sympy_head(self) -> type | None:
        """The SymPy function class `sympy_fn` produces, if it is a plain call.

        Used to map SymPy expressions back to trees: `sin(x)` -> the `sin` operator.
        """
        args = sympy.symbols(f"_a0:{self.arity}")
        try:
            out = self.sympy_fn(*args)
        except Exception:  # noqa: BLE001 - a mapping that cannot be probed has no head
            return None
        if isinstance(out, sympy.Basic) and tuple(out.args) == tuple(args):
            return out.func
        return None


# ---------------------------------------------------------------------------------
# JAX implementations that need care for finite gradients.


def _jax_pow(x, y):
    # IEEE pow: NaN for a negative base with a non-integer exponent, inf for 0^-y;
    # those are non-finite and so rejected. For a positive base differentiate the
    # plain power; for a non-positive base (integer exponent) the exponent has no
    # derivative, so stop its gradient instead of producing log(negative) = NaN.
    pos = x > 0
    x_pos = jnp.where(pos, x, 1.0)
    return jnp.where(pos, jnp.power(x_pos, y), jnp.power(x, jax.lax.stop_gradient(y)))


def _jax_relu(x):
    return jnp.maximum(x, 0.0)


def _np_relu(x):
    return np.maximum(x, 0.0)


def _np_vectorise(fn):
    ufunc = np.frompyfunc(fn, 1, 1)

    def apply(x):
        return np.asarray(ufunc(np.asarray(x, dtype=np.float64)), dtype=np.float64)

    return apply


def _math_gamma(x):
    try:
        return math.gamma(x)
    except (ValueError, OverflowError):
        if x > 0:
            return math.inf
        return math.nan


def _np_pow(x, y):
    return np.power(x, y)


def _np_asinh(x):
    return np.arcsinh(x)


def _sympy_relu(x):
    return sympy.Max(sympy.Integer(0), x)


def _sympy_round(x):
    return _Round(x)


def _round_numpycode(self, printer):
    return f"numpy.round({printer._print(self.args[0])})"


def _round_latex(self, printer):
    return rf"\operatorname{{round}}{{\left({printer._print(self.args[0])} \right)}}"


def _round_eval(cls, x):
    if x.is_Number:
        return sympy.Integer(round(float(x)))
    return None


#: SymPy function `round(x)`: round half to even, as Julia's and NumPy's `round`.
_Round = type("round", (sympy.Function,), {
    "nargs": 1,
    "eval": classmethod(_round_eval),
    "_numpycode": _round_numpycode,
    "_latex": _round_latex,
})


def _unary(name, jax_fn, numpy_fn, sympy_fn, latex, **kw):
    return Operator(name, 1, jax_fn, numpy_fn, sympy_fn, latex, **kw)


def _binary(name, jax_fn, numpy_fn, sympy_fn, latex, **kw):
    return Operator(name, 2, jax_fn, numpy_fn, sympy_fn, latex, **kw)


def _fn_latex(name: str, arity: int = 1) -> str:
    """A `str.format` template `\\operatorname{name}{\\left({0}, ... \\right)}` (braces doubled)."""
    args = ", ".join(f"{{{i}}}" for i in range(arity))
    return r"\operatorname{{" + name + r"}}{{\left(" + args + r" \right)}}"


_BUILTINS: tuple[Operator, ...] = (
    # binary
    _binary("+", jnp.add, np.add, lambda x, y: x + y, "{0} + {1}", infix="+",
            aliases=("add", "plus")),
    _binary("-", jnp.subtract, np.subtract, lambda x, y: x - y, "{0} - {1}", infix="-",
            aliases=("sub", "subtract")),
    _binary("*", jnp.multiply, np.multiply, lambda x, y: x * y, r"{0} \cdot {1}", infix="*",
            aliases=("mult", "mul", "multiply")),
    _binary("/", jnp.divide, np.divide, lambda x, y: x / y, r"\frac{{{0}}}{{{1}}}", infix="/",
            aliases=("div", "divide")),
    _binary("^", _jax_pow, _np_pow, lambda x, y: x**y, "{0}^{{{1}}}", infix="^",
            aliases=("pow", "safe_pow", "**")),
    _binary("max", jnp.maximum, np.maximum, sympy.Max, r"\max{{\left({0}, {1} \right)}}"),
    _binary("min", jnp.minimum, np.minimum, sympy.Min, r"\min{{\left({0}, {1} \right)}}"),
    _binary("mod", jnp.mod, np.mod, sympy.Mod, r"{0} \bmod {1}"),
    # unary
    _unary("neg", jnp.negative, np.negative, lambda x: -x, "-{0}"),
    _unary("square", jnp.square, np.square, lambda x: x**2, "{0}^{{2}}"),
    _unary("cube", lambda x: x * x * x, lambda x: x * x * x, lambda x: x**3, "{0}^{{3}}"),
    _unary("exp", jnp.exp, np.exp, sympy.exp, r"e^{{{0}}}"),
    _unary("log", jnp.log, np.log, sympy.log, r"\log{{\left({0} \right)}}",
           safe_input=1.0, aliases=("safe_log",)),
    _unary("log2", jnp.log2, np.log2, lambda x: sympy.log(x, 2), r"\log_{{2}}{{\left({0} \right)}}",
           safe_input=1.0, aliases=("safe_log2",)),
    _unary("log10", jnp.log10, np.log10, lambda x: sympy.log(x, 10),
           r"\log_{{10}}{{\left({0} \right)}}", safe_input=1.0, aliases=("safe_log10",)),
    _unary("log1p", jnp.log1p, np.log1p, lambda x: sympy.log(x + 1),
           r"\log{{\left({0} + 1 \right)}}", aliases=("safe_log1p",)),
    _unary("sqrt", jnp.sqrt, np.sqrt, sympy.sqrt, r"\sqrt{{{0}}}", safe_input=1.0,
           aliases=("safe_sqrt",)),
    _unary("abs", jnp.abs, np.abs, sympy.Abs, r"\left|{{{0}}}\right|"),
    _unary("sin", jnp.sin, np.sin, sympy.sin, r"\sin{{\left({0} \right)}}"),
    _unary("cos", jnp.cos, np.cos, sympy.cos, r"\cos{{\left({0} \right)}}"),
    _unary("tan", jnp.tan, np.tan, sympy.tan, r"\tan{{\left({0} \right)}}"),
    _unary("sinh", jnp.sinh, np.sinh, sympy.sinh, r"\sinh{{\left({0} \right)}}"),
    _unary("cosh", jnp.cosh, np.cosh, sympy.cosh, r"\cosh{{\left({0} \right)}}"),
    _unary("tanh", jnp.tanh, np.tanh, sympy.tanh, r"\tanh{{\left({0} \right)}}"),
    _unary("asin", jnp.arcsin, np.arcsin, sympy.asin, r"\operatorname{{asin}}{{\left({0} \right)}}",
           aliases=("safe_asin",)),
    _unary("acos", jnp.arccos, np.arccos, sympy.acos, r"\operatorname{{acos}}{{\left({0} \right)}}",
           aliases=("safe_acos",)),
    _unary("atan", jnp.arctan, np.arctan, sympy.atan, r"\operatorname{{atan}}{{\left({0} \right)}}"),
    _unary("asinh", jnp.arcsinh, _np_asinh, sympy.asinh,
           r"\operatorname{{asinh}}{{\left({0} \right)}}"),
    _unary("acosh", jnp.arccosh, np.arccosh, sympy.acosh,
           r"\operatorname{{acosh}}{{\left({0} \right)}}", safe_input=2.0,
           aliases=("safe_acosh",)),
    _unary("atanh", jnp.arctanh, np.arctanh, sympy.atanh,
           r"\operatorname{{atanh}}{{\left({0} \right)}}"),
    _unary("sign", jnp.sign, np.sign, sympy.sign, r"\operatorname{{sgn}}{{\left({0} \right)}}"),
    _unary("relu", _jax_relu, _np_relu, _sympy_relu, r"\max{{\left(0, {0} \right)}}"),
    _unary("erf", jax.scipy.special.erf, _np_vectorise(math.erf), sympy.erf,
           r"\operatorname{{erf}}{{\left({0} \right)}}"),
    _unary("erfc", jax.scipy.special.erfc, _np_vectorise(math.erfc), sympy.erfc,
           r"\operatorname{{erfc}}{{\left({0} \right)}}"),
    _unary("gamma", jax.scipy.special.gamma, _np_vectorise(_math_gamma), sympy.gamma,
           r"\Gamma{{\left({0} \right)}}"),
    _unary("round", jnp.round, np.round, _sympy_round,
           r"\operatorname{{round}}{{\left({0} \right)}}"),
    _unary("floor", jnp.floor, np.floor, sympy.floor, r"\left\lfloor{{{0}}}\right\rfloor"),
    _unary("ceil", jnp.ceil, np.ceil, sympy.ceiling, r"\left\lceil{{{0}}}\right\rceil"),
    _unary("inv", lambda x: 1.0 / x, lambda x: 1.0 / x, lambda x: 1 / x, r"\frac{{1}}{{{0}}}"),
)

#: Every built-in operator by its PySR name (read-only).
OPERATORS: Mapping[str, Operator] = types.MappingProxyType({op.name: op for op in _BUILTINS})
_ALIASES: Mapping[str, str] = types.MappingProxyType(
    {alias: op.name for op in _BUILTINS for alias in op.aliases}
)


def _unknown(name: str, valid: Sequence[str], what: str) -> ValueError:
    close = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"Unknown {what} {name!r}.{hint} Valid names: {', '.join(valid)}. A custom "
        "operator is a JAX callable plus an entry in `extra_sympy_mappings`."
    )


def get_operator(name: str) -> Operator:
    """Look up a built-in operator by its PySR name or an alias.

    Raises `ValueError` naming the valid operators, with a "Did you mean" suggestion.
    """
    if not isinstance(name, str):
        raise TypeError(f"Operator names are strings, got {type(name).__name__}: {name!r}.")
    key = name.strip()
    key = _ALIASES.get(key, key)
    if key in OPERATORS:
        return OPERATORS[key]
    if "(" in key and "=" in key:
        raise ValueError(
            f"{name!r} looks like a Julia operator definition. symjax_sr takes custom "
            "operators as Python/JAX callables: define `def myop(x): ...` with jax.numpy, "
            "pass the function itself, and give its SymPy form in `extra_sympy_mappings`."
        )
    raise _unknown(name, list(OPERATORS) + list(_ALIASES), "operator")


def _custom_operator(fn, arity: int, extra_sympy_mappings: Mapping[str, Any]) -> Operator:
    name = getattr(fn, "__name__", None)
    if not name or not name.isidentifier() or name == "<lambda>":
        raise ValueError(
            f"Custom operator {fn!r} needs a name: define it with `def name(x): ...` "
            "rather than a lambda, so that equation strings can refer to it."
        )
    if name in OPERATORS or name in _ALIASES:
        raise ValueError(
            f"Custom operator `{name}` shadows the built-in operator of that name; "
            "rename the function."
        )
    if name not in extra_sympy_mappings:
        raise ValueError(
            f"Custom operator `{name}` has no SymPy mapping. Add "
            f"`extra_sympy_mappings={{'{name}': lambda {', '.join('xy'[:arity])}: ...}}` "
            "so that it can be exported and printed."
        )

    def numpy_fn(*args):
        # The reference for a custom operator is its own JAX callable in float64.
        with jax.enable_x64(True):
            out = fn(*(jnp.asarray(a, dtype=jnp.float64) for a in args))
        return np.asarray(out, dtype=np.float64)

    return Operator(
        name=name,
        arity=arity,
        jax_fn=fn,
        numpy_fn=numpy_fn,
        sympy_fn=extra_sympy_mappings[name],
        latex=_fn_latex(name, arity),
    )


def _resolve(spec, arity: int, extra_sympy_mappings: Mapping[str, Any]) -> Operator:
    kind = "binary_operators" if arity == 2 else "unary_operators"
    other = "unary_operators" if arity == 2 else "binary_operators"
    if isinstance(spec, Operator):
        op = spec
    elif isinstance(spec, str):
        op = get_operator(spec)
    elif callable(spec):
        op = _custom_operator(spec, arity, extra_sympy_mappings)
    else:
        raise TypeError(
            f"Entries of `{kind}` are operator names or callables, got "
            f"{type(spec).__name__}: {spec!r}."
        )
    if op.arity != arity:
        raise ValueError(
            f"`{op.name}` takes {op.arity} argument(s) but was listed in `{kind}`; "
            f"move it to `{other}`."
        )
    return op


@dataclasses.dataclass(frozen=True)
class OperatorSet:
    """The ordered operators of one search. Hashable, so usable as a static jit argument.

    Opcodes: `PAD` (0), `VAR` (1), `CONST` (2), then `FIRST_OP + i` for
    `operators[i]`.
    """

    operators: tuple[Operator, ...]

    def __post_init__(self):
        names = [op.name for op in self.operators]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Operator(s) {dupes} listed more than once; list each once.")
        if not self.operators:
            raise ValueError("An operator set needs at least one operator.")

    def __len__(self) -> int:
        return len(self.operators)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(op.name for op in self.operators)

    @property
    def num_opcodes(self) -> int:
        return FIRST_OP + len(self.operators)

    @property
    def arity_table(self) -> np.ndarray:
        """Arity per opcode: 0 for padding and leaves."""
        return np.array([0, 0, 0] + [op.arity for op in self.operators], dtype=np.int32)

    @property
    def binary(self) -> tuple[Operator, ...]:
        return tuple(op for op in self.operators if op.arity == 2)

    @property
    def unary(self) -> tuple[Operator, ...]:
        return tuple(op for op in self.operators if op.arity == 1)

    def opcode(self, name: str) -> int:
        """The opcode of operator `name` (PySR name or alias) in this set."""
        key = _ALIASES.get(name, name)
        for i, op in enumerate(self.operators):
            if op.name == key:
                return FIRST_OP + i
        raise ValueError(
            f"Operator {name!r} is not in this operator set ({', '.join(self.names)}); "
            "add it to `binary_operators`/`unary_operators`."
        )

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _ALIASES.get(name, name) in self.names

    def operator(self, opcode: int) -> Operator:
        return self.operators[int(opcode) - FIRST_OP]


def make_operator_set(
    binary_operators: Sequence[str | Callable | Operator] = ("+", "-", "*", "/"),
    unary_operators: Sequence[str | Callable | Operator] = (),
    extra_sympy_mappings: Mapping[str, Any] | None = None,
) -> OperatorSet:
    """Build an `OperatorSet` from PySR-style operator lists.

    Entries are PySR names (`"+"`, `"cos"`), `Operator` records, or plain JAX callables
    (custom operators, whose SymPy form comes from `extra_sympy_mappings`).

    ```python
    ops = make_operator_set(["+", "*"], ["cos", "exp"])
    ```
    """
    extra = dict(extra_sympy_mappings or {})
    if isinstance(binary_operators, str) or isinstance(unary_operators, str):
        raise TypeError(
            "`binary_operators` and `unary_operators` are lists of names, e.g. "
            "binary_operators=['+', '*'], not a single string."
        )
    ops = [_resolve(s, 2, extra) for s in binary_operators]
    ops += [_resolve(s, 1, extra) for s in unary_operators]
    return OperatorSet(tuple(ops))

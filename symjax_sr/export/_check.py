"""Front-loaded export check: a custom operator whose SymPy form cannot be exported."""

from __future__ import annotations

import sympy

from .._operators import OPERATORS, OperatorSet
from ._template import function_heads, sympy_heads

__all__ = ["check_exportable"]


def check_exportable(operators: OperatorSet) -> None:
    """Raise `ValueError` if a formula over `operators` could not be exported.

    Every operator's SymPy form must build from SymPy arguments, be a SymPy expression,
    and use only function heads that map back to operators (built-in heads, or a plain
    call `name(x, ...)` of a custom operator's own head), so that `sympy()`, `latex()`,
    and the JAX, equinox and torch exports of its formulas work. Call it before a
    search so that a bad `extra_sympy_mappings` entry fails at once, not at the end.

    ```python
    check_exportable(make_operator_set(["+"], [softclip], {"softclip": ...}))
    ```
    """
    if not isinstance(operators, OperatorSet):
        raise TypeError(f"`check_exportable` takes an `OperatorSet`, got {type(operators).__name__}.")
    heads = sympy_heads(operators)
    for op in operators.operators:
        if OPERATORS.get(op.name) is op:
            continue
        args = sympy.symbols("x y")[: op.arity]
        call = f"extra_sympy_mappings['{op.name}']({', '.join(a.name for a in args)})"
        fix = (
            f"Give `extra_sympy_mappings['{op.name}']` a function of {op.arity} SymPy "
            f"argument(s) returning an expression of built-in SymPy functions, or "
            f"`sympy.Function('{op.name}')({', '.join(a.name for a in args)})`."
        )
        try:
            expr = op.sympy_fn(*args)
        except Exception as err:  # noqa: BLE001 - any failure of user code is reported
            raise ValueError(
                f"Custom operator `{op.name}`: {call} raised {type(err).__name__}: {err}. {fix}"
            ) from err
        if not isinstance(expr, sympy.Expr):
            raise ValueError(
                f"Custom operator `{op.name}`: {call} returned {expr!r} "
                f"({type(expr).__name__}), not a SymPy expression. {fix}"
            )
        unknown = [getattr(h, "__name__", str(h)) for h in function_heads(expr) if h not in heads]
        if unknown:
            raise ValueError(
                f"Custom operator `{op.name}`: its SymPy form `{expr}` uses "
                f"{', '.join(f'`{h}`' for h in unknown)}, which no "
                f"operator maps back to, so its formulas could not be exported. {fix}"
            )
        try:
            op.latex.format(*(["x"] * op.arity))
        except (IndexError, KeyError, ValueError) as err:
            raise ValueError(
                f"Custom operator `{op.name}`: its LaTeX template {op.latex!r} does not "
                f"format with {op.arity} argument(s) ({err}); use `{{0}}`, `{{1}}` for the "
                "arguments and double literal braces."
            ) from err

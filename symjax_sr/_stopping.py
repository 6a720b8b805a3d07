"""`early_stop_condition` in every form PySR users write it.

PySR takes a loss threshold or a Julia function as a string, e.g.
`"stop_if(loss, complexity) = loss < 1e-6 && complexity < 10"`. The string is parsed
here into a small, picklable Python callable (comparisons, `&&`/`||`/`!`, arithmetic and a
few math functions over the two arguments), never handed to `eval` unchecked.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
import numbers
import re
from collections.abc import Callable

_FUNCTIONS = {"abs": abs, "min": min, "max": max, "log": math.log, "log10": math.log10,
              "log2": math.log2, "exp": math.exp, "sqrt": math.sqrt}
_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
          ast.Compare, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq, ast.BinOp, ast.Add,
          ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Constant, ast.Name, ast.Load, ast.Call)
_SIGNATURE = re.compile(
    r"^\s*(?:function\s+)?(?:[A-Za-z_]\w*\s*)?\(\s*([A-Za-z_]\w*)\s*,\s*([A-Za-z_]\w*)\s*\)"
    r"\s*(?:=|->|\n)\s*(.*?)\s*(?:\bend\s*)?$",
    re.DOTALL,
)
_EXAMPLE = '"stop_if(loss, complexity) = loss < 1e-6 && complexity < 10"'


def _translate(body: str) -> str:
    """Julia's boolean and power syntax, and Float32 literals (`1f-6`), as Python."""
    body = body.replace("&&", " and ").replace("||", " or ").replace("^", "**")
    body = re.sub(r"!(?!=)", " not ", body)
    return re.sub(r"(\d)f([+-]?\d)", r"\1e\2", body).strip()


@dataclasses.dataclass(frozen=True)
class JuliaStopCondition:
    """PySR's string `early_stop_condition`, callable as `(loss, complexity) -> bool`."""

    source: str
    arguments: tuple[str, str]
    expression: str

    @classmethod
    def parse(cls, source: str) -> JuliaStopCondition:
        match = _SIGNATURE.match(source)
        if match is None:
            raise ValueError(
                f"`early_stop_condition` {source!r} is not a function of (loss, complexity); "
                f"write it as PySR does, e.g. {_EXAMPLE}, or pass a float or a Python callable."
            )
        a, b, body = match.groups()
        if a == b:
            raise ValueError(f"`early_stop_condition` {source!r} names both arguments {a!r}; "
                             f"use two names, e.g. {_EXAMPLE}.")
        expression = _translate(body)
        try:
            tree = ast.parse(expression, mode="eval")
        except SyntaxError as e:
            raise ValueError(f"`early_stop_condition` {source!r}: cannot read {body!r} ({e.msg}); "
                             f"e.g. {_EXAMPLE}.") from None
        for node in ast.walk(tree):
            bad = None
            if not isinstance(node, _NODES):
                bad = type(node).__name__
            elif isinstance(node, ast.Name) and node.id not in (a, b, *_FUNCTIONS):
                bad = f"the name {node.id!r}"
            elif isinstance(node, ast.Constant) and (
                    isinstance(node.value, bool) or not isinstance(node.value, (int, float))):
                bad = f"the constant {node.value!r}"
            elif isinstance(node, ast.Call) and not (
                    isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords):
                bad = "a call other than " + ", ".join(_FUNCTIONS)
            if bad is not None:
                raise ValueError(
                    f"`early_stop_condition` {source!r} uses {bad}; a string condition may use "
                    f"its two arguments ({a}, {b}), numbers, comparisons, && || !, + - * / ^ and "
                    f"{', '.join(_FUNCTIONS)}. For anything else pass a Python callable."
                )
        return cls(source, (a, b), expression)

    def __call__(self, loss: float, complexity: int) -> bool:
        names = dict(_FUNCTIONS, **{self.arguments[0]: float(loss), self.arguments[1]: int(complexity)})
        return bool(eval(_code(self.expression), {"__builtins__": {}}, names))  # noqa: S307  (whitelisted in parse)


@functools.cache
def _code(expression: str):
    """The compiled body, kept outside the dataclass: code objects do not pickle."""
    return compile(expression, "<early_stop_condition>", "eval")


def stop_condition(value) -> float | Callable[[float, int], bool] | None:
    """Validate `early_stop_condition`: None, a loss threshold, a callable or PySR's string."""
    if value is None or callable(value):
        return value
    if isinstance(value, str):
        return JuliaStopCondition.parse(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if math.isnan(float(value)):
            raise ValueError("`early_stop_condition` is NaN; pass a loss threshold such as 1e-6.")
        return float(value)
    raise TypeError(
        f"`early_stop_condition` must be a loss threshold (float), a callable "
        f"`(loss, complexity) -> bool` or PySR's Julia string, e.g. {_EXAMPLE}; got {value!r}."
    )

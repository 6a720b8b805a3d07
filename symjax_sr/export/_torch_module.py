"""The PyTorch module of an exported formula. Imports torch: import it lazily (`_torch.py`)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import sympy
import torch

from .._operators import OPERATORS
from ._equinox import broadcast_inputs
from ._template import Template, operator_by_name

__all__ = ["TorchExpression", "torch_function"]


def _pow(x, y):
    # As the registry's `^`: differentiate the plain power for a positive base; for a
    # non-positive one (integer exponent) the exponent gets no gradient, not NaN.
    pos = x > 0
    x_pos = torch.where(pos, x, torch.ones_like(x))
    return torch.where(pos, torch.pow(x_pos, y), torch.pow(x, y.detach()))


def _gamma(x):
    # torch has lgamma only: |Γ| = exp(lgamma) in float64, the sign from the interval.
    x64 = x.double()
    sign = torch.where((x64 < 0) & (torch.ceil(-x64) % 2 == 1), -1.0, 1.0).to(x64)
    pole = (x64 <= 0) & (x64 == torch.floor(x64))
    out = torch.where(pole, torch.full_like(x64, math.nan), sign * torch.exp(torch.lgamma(x64)))
    return out.to(x.dtype)


_TORCH = {
    "+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div, "^": _pow,
    "max": torch.maximum, "min": torch.minimum, "mod": torch.remainder,
    "neg": torch.neg, "square": torch.square, "cube": lambda x: x * x * x,
    "exp": torch.exp, "log": torch.log, "log2": torch.log2, "log10": torch.log10,
    "log1p": torch.log1p, "sqrt": torch.sqrt, "abs": torch.abs,
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan,
    "sinh": torch.sinh, "cosh": torch.cosh, "tanh": torch.tanh,
    "asin": torch.asin, "acos": torch.acos, "atan": torch.atan,
    "asinh": torch.asinh, "acosh": torch.acosh, "atanh": torch.atanh,
    "sign": torch.sign, "relu": lambda x: torch.maximum(x, torch.zeros_like(x)),
    "erf": torch.special.erf, "erfc": torch.special.erfc, "gamma": _gamma,
    "round": torch.round, "floor": torch.floor, "ceil": torch.ceil,
    "inv": torch.reciprocal,
    "identity": lambda x: x, "zero": torch.zeros_like,
}
_NUMBERS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
assert set(OPERATORS) <= set(_TORCH), "every built-in operator needs a torch function"


def _from_torch(x):
    return jnp.asarray(x.detach().cpu().numpy())


def _to_torch(a, like):
    return torch.as_tensor(np.array(a)).to(dtype=like.dtype, device=like.device)


def _jax_bridge(fn):
    """A torch function computing the JAX callable `fn`, with its gradient from `jax.vjp`
    (on the host: a fallback for custom operators without a torch mapping)."""

    class _Bridge(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *xs):
            out, ctx.vjp = jax.vjp(fn, *(_from_torch(x) for x in xs))
            ctx.inputs = [torch.empty(0, dtype=x.dtype, device=x.device) for x in xs]
            ctx.out_dtype = out.dtype
            return _to_torch(out, xs[0])

        @staticmethod
        def backward(ctx, g):
            cts = ctx.vjp(jnp.asarray(g.detach().cpu().numpy(), ctx.out_dtype))
            return tuple(_to_torch(c, like) for c, like in zip(cts, ctx.inputs, strict=True))

    def apply(*xs):
        xs = torch.broadcast_tensors(*xs)
        return _Bridge.apply(*xs)

    return apply


def torch_function(name: str, operators, extra_torch_mappings):
    """The torch function of operator (or special) `name`: `extra_torch_mappings` first,
    then the built-in table, then (custom operators) the JAX bridge."""
    if name in extra_torch_mappings:
        fn = extra_torch_mappings[name]
    elif name in _TORCH:  # custom operators cannot shadow built-in names
        fn = _TORCH[name]
    else:
        fn = _jax_bridge(operator_by_name(name, operators).jax_fn)
    binary = name not in ("identity", "zero") and operator_by_name(name, operators).arity == 2
    return _fold(fn) if binary else fn


def _fold(fn):
    def folded(*args):
        return functools.reduce(fn, args)

    return folded


def _compile(expr, fns: dict, constant_index: dict):
    """`expr` as a function of an environment (inputs by name, constants, dtype)."""
    if isinstance(expr, sympy.Symbol):
        name = expr.name
        if name in constant_index:
            i = constant_index[name]
            return lambda env: env["constants"][i]
        return lambda env: env["inputs"][name]
    if expr.func in fns:
        fn = fns[expr.func]
        if not expr.args:
            value = fn

            return lambda env: torch.tensor(value, dtype=env["dtype"], device=env["device"])
        children = [_compile(a, fns, constant_index) for a in expr.args]
        return lambda env: fn(*(c(env) for c in children))
    if expr.is_Number or isinstance(expr, sympy.NumberSymbol):
        value = float(expr)
        return lambda env: torch.tensor(value, dtype=env["dtype"], device=env["device"])
    raise ValueError(
        f"Cannot export `{expr}` to PyTorch: no torch function for `{expr.func}`. Add a "
        "custom operator for it (a JAX callable plus its `extra_sympy_mappings` entry), "
        "pass its operator set as `operators=`, and its torch form in "
        "`extra_torch_mappings` if the JAX bridge will not do."
    )


class TorchExpression(torch.nn.Module):
    """A formula (or several, stacked) as a `torch.nn.Module` (sympytorch's behaviour).

    `constants` is an `nn.Parameter` holding the formula's float constants. Call it as
    `module(X)` with `X [..., n_features]` (or keyword variables); `.sympy()` gives the
    formula back with the current constants.
    """

    def __init__(self, template: Template, extra_torch_mappings: dict, extra_heads: dict, dtype=None):
        super().__init__()
        dtype = torch.get_default_dtype() if dtype is None else dtype
        self.template = template
        self.constants = torch.nn.Parameter(torch.tensor(template.values, dtype=dtype))
        fns = dict(extra_heads)
        for head, name in template.heads.items():
            if name in _NUMBERS:
                fns[head] = _NUMBERS[name]
            else:
                fns[head] = torch_function(name, template.operators, extra_torch_mappings)
        index = {n: i for i, n in enumerate(template.constant_names)}
        self._programs = [_compile(e, fns, index) for e in template.exprs]

    @property
    def variable_names(self) -> tuple[str, ...]:
        return self.template.variable_names

    def forward(self, X=None, **variables):
        dtype, device = self.constants.dtype, self.constants.device

        def asarray(v):
            v = torch.as_tensor(v, device=device)
            return v if v.is_floating_point() else v.to(dtype)

        inputs, batch = broadcast_inputs(self.template, X, variables, asarray, "TorchExpression")
        dtype = functools.reduce(torch.promote_types, [v.dtype for v in inputs.values()], dtype)
        env = {"inputs": inputs, "constants": self.constants, "dtype": dtype, "device": device}
        outs = [torch.broadcast_to(p(env).to(dtype), batch) for p in self._programs]
        return torch.stack(outs, dim=-1) if self.template.multi_output else outs[0]

    def sympy(self):
        """The SymPy expression (a list for a stacked module) with the current constants."""
        values = self.constants.detach().cpu().numpy()
        return self.template.sympy(values, values.dtype)

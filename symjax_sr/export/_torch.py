"""PyTorch export (optional extra `torch`): torch is imported only when it is used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence

import sympy

from .._operators import OperatorSet
from ._template import make_template, sympy_heads

__all__ = ["to_torch", "stack_torch"]


def _torch_module():
    try:
        return importlib.import_module(f"{__package__}._torch_module")
    except ImportError as err:
        raise ImportError(
            "Exporting to PyTorch needs torch, which is not installed: "
            "`pip install symjax_sr[torch]` (or `pip install torch`)."
        ) from err


def _split_mappings(extra: Mapping | None, operators: OperatorSet | None):
    """`extra_torch_mappings` keyed by operator name or SymPy head -> (by name, by head)."""
    by_name, by_head = {}, {}
    heads = sympy_heads(operators)
    for key, fn in (extra or {}).items():
        if not callable(fn):
            raise TypeError(
                f"`extra_torch_mappings[{key!r}]` must be a torch function, got {fn!r}."
            )
        if isinstance(key, str):
            by_name[key] = fn
        elif key in heads:
            by_name[heads[key]] = fn
        else:
            by_head[key] = fn
    return by_name, by_head


def _build(items, operators, variable_names, extra_torch_mappings, dtype):
    module = _torch_module()
    by_name, by_head = _split_mappings(extra_torch_mappings, operators)
    template = make_template(items, operators, variable_names)
    return module.TorchExpression(template, by_name, by_head, dtype)


def to_torch(expr_or_tree, *, operators: OperatorSet | None = None,
             variable_names: Sequence[str] | None = None,
             extra_torch_mappings: Mapping | None = None, dtype=None):
    """Export a formula as a `torch.nn.Module` whose float constants are an `nn.Parameter`.

    **Arguments:**

    - `expr_or_tree`, `operators`, `variable_names`: as for `to_equinox`.
    - `extra_torch_mappings`: torch functions for custom operators, keyed by operator
      name or SymPy head (PySR's argument). A custom operator without one runs its JAX
      callable through a host bridge (values and gradients via `jax.vjp`).
    - `dtype`: the torch dtype of the constants (torch's default when None).

    **Returns:** a `TorchExpression`: `module(X [N, n_features]) -> [N]`, with `.sympy()`.

    Needs the optional dependency torch (`pip install symjax_sr[torch]`).

    ```python
    f = to_torch(sympy.sympify("2.5*cos(x0) + x1"))
    f(torch.ones(4, 2))  # tensor of shape [4]
    ```
    """
    if isinstance(expr_or_tree, (list, tuple)):
        raise TypeError("`to_torch` exports one formula; use `stack_torch` for several.")
    return _build(expr_or_tree, operators, variable_names, extra_torch_mappings, dtype)


def stack_torch(exprs_or_trees: Sequence, *, operators: OperatorSet | None = None,
                variable_names: Sequence[str] | None = None,
                extra_torch_mappings: Mapping | None = None, dtype=None):
    """Several formulas as one torch module returning `[N, outputs]` (as `to_torch` each)."""
    if isinstance(exprs_or_trees, (str, sympy.Basic)) or not isinstance(exprs_or_trees, Sequence):
        raise TypeError("`stack_torch` takes a list of formulas; use `to_torch` for one.")
    return _build(list(exprs_or_trees), operators, variable_names, extra_torch_mappings, dtype)

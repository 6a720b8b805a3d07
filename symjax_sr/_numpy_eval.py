"""Independent NumPy evaluation of host trees: the reference every kernel is tested against.

`float32=True` simulates float32 arithmetic the way XLA:CPU performs it: each node
is computed in float64 from float32 operands, then rounded to float32, with
subnormals flushed to zero on input and output (XLA:CPU runs with flush-to-zero and
denormals-are-zero). Non-finite flags then match a float32 kernel exactly, up to
the last-ulp differences of transcendental functions.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._operators import CONST, VAR, OperatorSet
from ._tree import Tree

__all__ = ["evaluate_tree_numpy"]

_TINY32 = np.finfo(np.float32).tiny


def _to32(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)
    return np.where(np.abs(x) < _TINY32, 0.0 * x, x)


def evaluate_tree_numpy(
    tree: Tree,
    X: np.ndarray,
    operators: OperatorSet,
    *,
    float32: bool = False,
    perturb: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate `tree` on `X [N, F]` with NumPy.

    Returns `(pred, ok, scale)` per row: `pred` is NaN where not ok, `ok` is False
    where any node produced a non-finite value, and `scale` is the largest absolute
    intermediate value on that row.

    With `perturb > 0`, every operator's operands and result are multiplied by
    `1 + perturb * u`, `u ~ U(-1, 1)` (the backward-error model of floating point):
    the spread of a few such runs measures how much rounding errors of that size
    can move the result, which is the tolerance a float kernel should be held to.
    """
    if perturb and rng is None:
        rng = np.random.default_rng(0)
    X = np.asarray(X, dtype=np.float64)
    rnd = _to32 if float32 else (lambda v: v)
    X = rnd(X)
    N = X.shape[0]
    ok = np.ones(N, bool)
    scale = np.zeros(N)
    stack: list[np.ndarray] = []
    arity = operators.arity_table
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for o, a, v in zip(tree.op, tree.arg, tree.value):
            if o == VAR:
                out = X[:, a].copy()
            elif o == CONST:
                out = np.full(N, rnd(np.float64(v)))
            else:
                fn = operators.operator(o).numpy_fn
                args = [stack.pop() for _ in range(arity[o])][::-1]
                if perturb:
                    args = [x * (1 + perturb * rng.uniform(-1, 1, N)) for x in args]
                out = rnd(np.asarray(fn(*args), dtype=np.float64) * np.ones(N))
                if perturb:
                    out = out * (1 + perturb * rng.uniform(-1, 1, N))
            finite = np.isfinite(out)
            ok &= finite
            scale = np.maximum(scale, np.where(finite, np.abs(out), 0.0))
            stack.append(out)
    (pred,) = stack
    return np.where(ok, pred, np.nan), ok, scale

"""`distill`: symbolic regression of a JAX callable (a trained network, a vector field)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

from ._evaluate import check_data
from ._regressor import PySRRegressor

__all__ = ["distill"]


def _shape_or_error(fn, x):
    try:
        out = jax.eval_shape(fn, x)
    except Exception as err:  # noqa: BLE001 - any tracing failure means "not this way"
        return None, err
    if not hasattr(out, "shape"):
        return None, TypeError(f"it returned a {type(out).__name__}, not one array")
    return tuple(out.shape), None


def _evaluate(fn: Callable, X: np.ndarray, batched: bool | None) -> np.ndarray:
    """`fn` on every row of `X`: `[N]` or `[N, O]`."""
    n, f = X.shape
    call = lambda x: fn(x)  # noqa: E731 - a plain function: jit hashes it, not `fn`'s arrays
    per_sample = jax.vmap(call)
    if batched is None:
        # Per sample first: a row-wise batched function (`X[..., 0] / X[..., 1]`) gives
        # the same values through `vmap`, while reading a per-sample function's output
        # on the whole batch as batched can silently mix rows (`x[0]` is then row 0).
        shape, err_one = _shape_or_error(call, X[0])
        if shape is not None and len(shape) <= 1:
            batched = False
        else:
            shape_all, err_all = _shape_or_error(call, X)
            if shape_all is None or shape_all[:1] != (n,) or len(shape_all) > 2:
                one = f"output shape {shape}" if shape is not None else f"{type(err_one).__name__}: {err_one}"
                every = (f"output shape {shape_all}" if shape_all is not None
                         else f"{type(err_all).__name__}: {err_all}")
                raise ValueError(
                    f"`distill` cannot read `fn` as per-sample ([{f}] -> [] or [outputs]) nor as "
                    f"batched ([{n}, {f}] -> [{n}] or [{n}, outputs]): on one sample it gave "
                    f"{one}; on all of X it gave {every}. Fix `fn`, or pass `batched=` to say "
                    "which it is."
                )
            batched = True
    elif not isinstance(batched, bool):
        raise TypeError(f"`batched` must be True, False or None (detect), got {batched!r}.")
    Y = np.asarray(jax.jit(call if batched else per_sample)(X))
    want = f"[{n}] or [{n}, outputs]" if batched else "[] or [outputs] per sample"
    if Y.ndim not in (1, 2) or Y.shape[0] != n or (Y.ndim == 2 and Y.shape[1] == 0):
        got = Y.shape if batched else Y.shape[1:]
        raise ValueError(f"`fn` must return {want}, got shape {got}; reshape its output.")
    if not np.issubdtype(Y.dtype, np.floating):
        if np.issubdtype(Y.dtype, np.complexfloating) or Y.dtype == bool:
            raise TypeError(f"`fn` must return real numbers, got dtype {Y.dtype}.")
        Y = Y.astype(np.float64)
    bad = ~np.isfinite(Y.reshape(n, -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"`fn` is NaN or inf on {rows.size} of {n} samples (first: row {rows[0]}, "
            f"X = {X[rows[0]].tolist()}); restrict `X` to where `fn` is finite."
        )
    return Y


def distill(fn: Callable, X, *, variable_names: Sequence[str] | None = None,
            batched: bool | None = None, **regressor_options) -> PySRRegressor:
    """Find formulas for a JAX callable (a network, an equinox module) from sample inputs.

    **Arguments:**

    - `fn`: a JAX-traceable function. Per sample, `[F] -> []` or `[F] -> [O]` (it is
      `jax.vmap`-ed over the rows of `X`), or batched, `[N, F] -> [N]` or `[N, O]`.
    - `X`: the inputs, `[N, F]`, finite.
    - `variable_names`: names of the `F` features (default `x0, x1, ...`).
    - `batched`: `False` per sample, `True` batched; `None` (default) detects it: per
      sample when `fn` traces on one row `[F]` and returns `[]` or `[O]`, else batched
      when it returns `[N]` or `[N, O]` on all of `X`. Pass it when `fn` could be read
      both ways with different results (e.g. it uses batch statistics).
    - `regressor_options`: `PySRRegressor` parameters (`binary_operators`, `niterations`,
      `random_state`, ...).

    **Returns:** the `PySRRegressor`, fitted to `fn(X)`: one formula per output
    (`model.sympy()`, `model.equinox()` for a module with trainable constants).

    ```python
    model = distill(lambda x: x[1] / (1 + x[0]), X, binary_operators=["+", "*", "/"])
    model.sympy()  # x1/(x0 + 1)
    ```
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be a callable such as an equinox module, got {type(fn).__name__}.")
    X = check_data(X)
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float32)
    model = PySRRegressor(**regressor_options)  # unknown options fail here, before evaluating
    Y = _evaluate(fn, X, batched)
    return model.fit(X, Y, variable_names=variable_names)

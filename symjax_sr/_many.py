"""Many independent regressions in one jitted program: `search_many`.

`X [B, N, F]`, `y [B, N]` (one formula per sensor, cell, pixel ...) run as B searches
at once: the PySR iteration of `_search.py` is vmapped over a problem axis beside the
island axis, so B problems cost one compiled program and one dispatch per iteration
instead of B of each. Each problem keeps its own data, baseline, random stream
(`random_state + b` by default) and hall of fame, and returns PySR's equations table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._equations import equations_table
from ._evaluate import check_data, get_evaluator
from ._params import PYSR_DEFAULTS, build_search_options, check_unknown_kwargs
from ._run import (
    SearchResult,
    _compiled,
    _cur_maxsize,
    _pad_features,
    _pad_rows,
    hall_of_fame_entries,
    padded_rows,
)
from ._search import SearchData, baseline_loss, init_state, iteration

__all__ = ["search_many", "ManyResult"]


@dataclasses.dataclass
class ManyResult:
    """What `search_many` returns: one equations table and one `SearchResult` per problem."""

    equations: list[pd.DataFrame]
    results: list[SearchResult]
    wall_s: float
    compile_s: float


def _init_many(keys, evaluator, data, opts, curmaxsize):
    return jax.vmap(lambda k, d: init_state(k, evaluator, d, opts, curmaxsize))(keys, data)


def _iteration_many(state, evaluator, data, opts, curmaxsize):
    return jax.vmap(lambda s, d: iteration(s, evaluator, d, opts, curmaxsize))(state, data)


def _baseline_many(evaluator, data, opts):
    return jax.vmap(lambda d: baseline_loss(evaluator, d, opts))(data)


_INIT_MANY = jax.jit(_init_many, static_argnames=("evaluator", "opts"))
_ITERATION_MANY = jax.jit(_iteration_many, static_argnames=("evaluator", "opts"))
_BASELINE_MANY = jax.jit(_baseline_many, static_argnames=("evaluator", "opts"))


def search_many(
    X, y, *, variable_names: Sequence[str] | None = None, random_state: int | Sequence[int] | None = None,
    evaluator: str = "switch", **params: Any,
) -> ManyResult:
    """B independent searches at once on `X [B, N, F]`, `y [B, N]`.

    `params` are PySRRegressor's (`binary_operators`, `niterations`, `populations`,
    `maxsize`, `timeout_in_seconds`, `early_stop_condition` as a loss threshold ...);
    every problem gets the same options. `random_state` is one seed (problem `b` uses
    `random_state + b`) or one seed per problem. The run stops after `niterations`, at
    `timeout_in_seconds`, or once every problem has an equation with loss at most
    `early_stop_condition`.
    """
    check_unknown_kwargs({k: v for k, v in params.items() if k not in PYSR_DEFAULTS})
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 3 or y.ndim != 2 or y.shape != X.shape[:2]:
        raise ValueError(f"`search_many` takes X [B, N, F] and y [B, N] of the same B and N, got "
                         f"shapes {X.shape} and {y.shape}; for one problem use PySRRegressor.fit.")
    B, N, F = X.shape
    for b in range(B):
        check_data(X[b], name=f"X[{b}]")
    if not np.all(np.isfinite(y)):
        raise ValueError("`y` contains NaN or inf; drop those rows (in every problem) before fitting.")
    p = {**PYSR_DEFAULTS, **params}
    early = p["early_stop_condition"]
    if early is not None and (callable(early) or isinstance(early, str)):
        raise TypeError("`search_many` takes `early_stop_condition` as a loss threshold (a float).")
    for name in ("guesses", "select_k_features", "denoise", "batching",
                 "loss_function_expression", "warm_start", "expression_spec"):
        if p.get(name) not in (None, False, PYSR_DEFAULTS.get(name)):
            raise ValueError(f"`{name}` is not supported by `search_many`; use PySRRegressor.fit "
                             "per problem for it.")
    opts, dtype = build_search_options(p, F)
    if variable_names is not None and len(variable_names) != F:
        raise ValueError(f"`variable_names` needs {F} names, got {len(variable_names)}.")
    names = list(variable_names) if variable_names is not None else [f"x{i}" for i in range(F)]
    if random_state is None or np.ndim(random_state) == 0:
        seed0 = 0 if random_state is None else int(random_state)
        seeds = [seed0 + b for b in range(B)]
    else:
        seeds = [int(s) for s in random_state]
        if len(seeds) != B:
            raise ValueError(f"`random_state` lists {len(seeds)} seeds for {B} problems.")
    jdtype = jnp.float64 if dtype == np.float64 else jnp.float32
    ctx = jax.enable_x64(True) if dtype == np.float64 else contextlib.nullcontext()
    with ctx:
        return _run(X, y, opts, names, seeds, evaluator, int(p["niterations"]),
                    p["timeout_in_seconds"], early, jdtype, p["loss_scale"])


def _run(X, y, opts, names, seeds, evaluator, niterations, timeout, early, dtype, loss_scale):
    B, N, F = X.shape
    ev = get_evaluator(evaluator, opts.operators)
    n = padded_rows(N)
    Xs, ys, ws, popts = [], [], [], opts
    for b in range(B):
        Xb, yb, wb = _pad_rows(X[b], y[b], None, n)
        Xb, popts = _pad_features(Xb, opts)
        Xs.append(Xb.T)
        ys.append(yb)
        ws.append(wb)
    # padded rows have weight 0, as in `run_search` (which always passes the weights)
    data = SearchData(jnp.asarray(np.stack(Xs), dtype), jnp.asarray(np.stack(ys), dtype),
                      jnp.asarray(np.stack(ws), dtype),
                      jnp.zeros((B,), dtype), jnp.full((B,), F, jnp.int32))
    t0 = time.perf_counter()
    data = data._replace(baseline=_compiled(_BASELINE_MANY, ev, popts, data=data)(data=data))
    keys = jnp.stack([jax.random.key(s, impl="rbg") for s in seeds])
    init = dict(keys=keys, data=data, curmaxsize=jnp.int32(_cur_maxsize(popts, 0, niterations)))
    state = _compiled(_INIT_MANY, ev, popts, **init)(**init)
    step = _compiled(_ITERATION_MANY, ev, popts, state=state, data=data, curmaxsize=jnp.int32(0))
    compile_s = time.perf_counter() - t0
    start = time.perf_counter()
    evals = np.zeros(B)
    it, stopped = 0, "niterations"
    for it in range(1, niterations + 1):
        cur = jnp.int32(_cur_maxsize(popts, it - 1, niterations))
        state, e = step(state=state, data=data, curmaxsize=cur)
        evals += np.asarray(e)
        if timeout is not None and time.perf_counter() - t0 >= timeout:
            stopped = "timeout"
            break
        if early is not None and bool(np.all(np.asarray(jnp.min(state.hof.loss, axis=1)) <= float(early))):
            stopped = "early_stop_condition"
            break
    wall = time.perf_counter() - start
    results, tables = [], []
    for b in range(B):
        sb = jax.tree.map(lambda a, b=b: a[b], state)
        entries = hall_of_fame_entries(sb)
        results.append(SearchResult(entries, sb, it, float(evals[b]), wall, compile_s, stopped))
        tables.append(equations_table(entries, opts.operators, names, loss_scale))
    return ManyResult(tables, results, wall, compile_s)

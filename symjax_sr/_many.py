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
import functools
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._devices import over_problems, prng_impl, problem_mesh, replicate, shard_problems
from ._equations import equations_table
from ._evaluate import check_data, get_evaluator
from ._params import PYSR_DEFAULTS, build_search_options, check_unknown_kwargs, devices_of
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


def _split(fn, replicated=()):
    """`fn` with its problems split over the static `mesh` (`over_problems`)."""

    def split(*, evaluator, opts, mesh, **kwargs):
        body = functools.partial(fn, evaluator=evaluator, opts=opts)
        return over_problems(body, mesh, replicated)(**kwargs)

    return jax.jit(split, static_argnames=("evaluator", "opts", "mesh"))


_INIT_SPLIT = _split(_init_many, replicated=("curmaxsize",))
_ITERATION_SPLIT = _split(_iteration_many, replicated=("curmaxsize",))
_BASELINE_SPLIT = _split(_baseline_many)


def search_many(
    X, y, *, variable_names: Sequence[str] | None = None, random_state: int | Sequence[int] | None = None,
    evaluator: str = "switch", devices=None, **params: Any,
) -> ManyResult:
    """B independent searches at once on `X [B, N, F]`, `y [B, N]`.

    `params` are PySRRegressor's (`binary_operators`, `niterations`, `populations`,
    `maxsize`, `timeout_in_seconds`, `early_stop_condition` as a loss threshold ...);
    every problem gets the same options. `random_state` is one seed (problem `b` uses
    `random_state + b`) or one seed per problem. The run stops after `niterations`, at
    `timeout_in_seconds`, or once every problem has an equation with loss at most
    `early_stop_condition`.

    `devices` (an int, or a list of JAX devices; default PySR's `procs`) splits the
    problems over that many devices, each running its block; B is padded to a multiple
    of them with copies of the last problem, whose results are dropped. With `devices`
    set the random numbers come from threefry, so that every device count gives the same
    tables (without it, from `rbg`, the fastest on one CPU device).
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
    if devices is None:
        devices = devices_of(p)
    mesh = problem_mesh(devices)
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
                    p["timeout_in_seconds"], early, jdtype, p["loss_scale"], mesh,
                    prng_impl(devices))


def _run(X, y, opts, names, seeds, evaluator, niterations, timeout, early, dtype, loss_scale,
         mesh, impl):
    B = X.shape[0]
    if mesh is not None and B % mesh.size:  # pad with copies of the last problem
        extra = mesh.size - B % mesh.size
        X = np.concatenate([X, np.repeat(X[-1:], extra, 0)])
        y = np.concatenate([y, np.repeat(y[-1:], extra, 0)])
        seeds = seeds + [seeds[-1]] * extra
    Bp, N, F = X.shape
    ev = get_evaluator(evaluator, opts.operators)
    n = padded_rows(N)
    Xs, ys, ws, popts = [], [], [], opts
    for b in range(Bp):
        Xb, yb, wb = _pad_rows(X[b], y[b], None, n)
        Xb, popts = _pad_features(Xb, opts)
        Xs.append(Xb.T)
        ys.append(yb)
        ws.append(wb)
    # padded rows have weight 0, as in `run_search` (which always passes the weights)
    data = SearchData(jnp.asarray(np.stack(Xs), dtype), jnp.asarray(np.stack(ys), dtype),
                      jnp.asarray(np.stack(ws), dtype),
                      jnp.zeros((Bp,), dtype), jnp.full((Bp,), F, jnp.int32))
    keys = jnp.stack([jax.random.key(s, impl=impl) for s in seeds])
    t0 = time.perf_counter()
    if mesh is None:
        baseline, init_many, iteration_many = _BASELINE_MANY, _INIT_MANY, _ITERATION_MANY
        static, scalar = None, jnp.int32
    else:
        baseline, init_many, iteration_many = _BASELINE_SPLIT, _INIT_SPLIT, _ITERATION_SPLIT
        static = dict(mesh=mesh)
        data, keys = shard_problems(data, mesh), shard_problems(keys, mesh)
        scalar = lambda v: replicate(jnp.int32(v), mesh)  # noqa: E731
    data = data._replace(baseline=_compiled(baseline, ev, popts, static, data=data)(data=data))
    init = dict(keys=keys, data=data, curmaxsize=scalar(_cur_maxsize(popts, 0, niterations)))
    state = _compiled(init_many, ev, popts, static, **init)(**init)
    step = _compiled(iteration_many, ev, popts, static, state=state, data=data,
                     curmaxsize=scalar(0))
    compile_s = time.perf_counter() - t0
    start = time.perf_counter()
    evals = np.zeros(Bp)
    it, stopped = 0, "niterations"
    for it in range(1, niterations + 1):
        state, e = step(state=state, data=data,
                        curmaxsize=scalar(_cur_maxsize(popts, it - 1, niterations)))
        evals += np.asarray(e)
        if timeout is not None and time.perf_counter() - t0 >= timeout:
            stopped = "timeout"
            break
        if early is not None and bool(np.all(np.asarray(state.hof.loss).min(axis=1)[:B] <= float(early))):
            stopped = "early_stop_condition"
            break
    wall = time.perf_counter() - start
    if mesh is not None:  # one device's copy, to be sliced per problem
        state = jax.device_put(state, mesh.devices.flat[0])
    results, tables = [], []
    for b in range(B):
        sb = jax.tree.map(lambda a, b=b: a[b], state)
        entries = hall_of_fame_entries(sb)
        results.append(SearchResult(entries, sb, it, float(evals[b]), wall, compile_s, stopped))
        tables.append(equations_table(entries, opts.operators, names, loss_scale))
    return ManyResult(tables, results, wall, compile_s)

"""The host loop around the jitted iteration: data, stopping rules, progress, checkpoints.

Everything inside an iteration stays on the device; between iterations the host
checks `niterations`, `timeout_in_seconds`, `max_evals`, `early_stop_condition`
and Ctrl-C (which stops after the current iteration, keeping what was found), and
calls the user's callback (progress printing, checkpointing).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._devices import (
    island_mesh,
    prng_impl,
    replicate,
    shard_state,
    sharded_draw,
    sharded_evolve,
    sharded_iteration,
    sharded_settle,
)
from ._evaluate import check_data, get_evaluator, l2_loss
from ._hall_of_fame import pareto_mask
from ._memory import available_bytes, check_memory, program_bytes
from ._options import SearchOptions
from ._parametric import ParametricEvaluator
from ._polish import polish_entries
from ._rewrite import rewrite_entries
from ._search import (
    SearchData,
    SearchState,
    _live_features,
    baseline_loss,
    draw_batch,
    evolve,
    init_evaluated,
    init_islands,
    init_state,
    iteration,
    settle,
    whole_batch,
)
from ._snap import loss_atol, snap_entries
from ._stopping import stop_condition
from ._template import TemplateEvaluator, TemplateMember
from ._tree import Population, Tree

__all__ = ["SearchResult", "HofEntry", "run_search", "hall_of_fame_entries", "padded_rows",
           "padded_features"]


@dataclasses.dataclass(frozen=True)
class HofEntry:
    """One hall-of-fame expression; `params` `[n_params, n_categories]` holds a parametric
    expression's parameter values (its tree names parameter `j` as feature `F + j`); a
    template search's `tree` is a `TemplateMember`."""

    complexity: int
    loss: float
    tree: Tree | TemplateMember
    pareto: bool
    params: np.ndarray | None = None


@dataclasses.dataclass
class SearchResult:
    """What a search returns: the hall of fame, the final state (for warm starts), counts."""

    hall_of_fame: list[HofEntry]
    state: SearchState
    iterations: int
    num_evals: float
    wall_s: float
    compile_s: float
    stopped_because: str
    memory_bytes: int | None = None  # XLA's estimate for one iteration (None if unknown)
    #: Loss at or below which an entry fits the rows to rounding (`_snap.loss_atol`), for
    #: `model_selection="best"`; 0 where no such level is defined (`_plain` is false).
    loss_floor: float = 0.0

    @property
    def pareto_front(self) -> list[HofEntry]:
        return [e for e in self.hall_of_fame if e.pareto]


def hall_of_fame_entries(state: SearchState, opts: SearchOptions | None = None) -> list[HofEntry]:
    """The hall of fame on the host, simplest first (`opts` of a parametric search
    unpacks each entry's parameter values)."""
    hof = jax.device_get(state.hof)
    front = np.asarray(pareto_mask(state.hof))
    pop = hof.population  # host arrays: slicing device arrays would dispatch per entry
    out = []
    for c in np.flatnonzero(np.asarray(hof.exists)):
        params = None
        if opts is not None and opts.template is not None:
            member = TemplateMember.from_row(pop.op[c], pop.arg[c], pop.const[c], opts.template,
                                             opts.sub_length, opts.const_slots)
            out.append(HofEntry(int(c), float(hof.loss[c]), member, bool(front[c])))
            continue
        if opts is not None and opts.param_slots:
            params = np.asarray(hof.population.const[c, opts.const_slots:]).reshape(
                opts.n_params, opts.n_categories)
        out.append(HofEntry(int(c), float(hof.loss[c]), pop.tree(int(c)), bool(front[c]), params))
    return out


def _cur_maxsize(opts: SearchOptions, it: int, niterations: int) -> int:
    """PySR's warm-up: maxsize grows linearly from 3 over `warmup_maxsize_by` of the run."""
    if opts.warmup_maxsize_by <= 0:
        return opts.maxsize
    frac = it / max(niterations, 1)
    if frac > opts.warmup_maxsize_by:
        return opts.maxsize
    return min(opts.maxsize, 3 + math.floor((opts.maxsize - 3) * frac / opts.warmup_maxsize_by))


@contextlib.contextmanager
def _sigint_flag():
    """Turn Ctrl-C into a flag checked between iterations (main thread only)."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["hit"]:  # a second Ctrl-C interrupts at once
            raise KeyboardInterrupt
        flag["hit"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


_ITERATION = jax.jit(iteration, static_argnames=("evaluator", "opts"))
# with batching, the iteration as three programs: only the cycles' and the constant
# fitting's (`evolve`, most of the compilation) is independent of the number of rows
_DRAW = jax.jit(draw_batch, static_argnames=("evaluator", "opts"))
_EVOLVE = jax.jit(evolve, static_argnames=("evaluator", "opts"))
_SETTLE = jax.jit(settle, static_argnames=("evaluator", "opts"))
_INIT = jax.jit(init_state, static_argnames=("evaluator", "opts"))
# plain expressions without guesses start in two programs: the random islands, which do
# not see the data (one program for every number of rows), then their scores on the data
_INIT_ISLANDS = jax.jit(init_islands, static_argnames=("evaluator", "opts", "dtype"))
_INIT_EVALUATED = jax.jit(init_evaluated, static_argnames=("evaluator", "opts"))
_BASELINE = jax.jit(baseline_loss, static_argnames=("evaluator", "opts"))

_COMPILED: collections.OrderedDict = collections.OrderedDict()
#: Programs kept across fits. Each holds executable memory (about 2,800 memory maps and
#: 100 MB for a small search's iteration on XLA:CPU), so the cache is bounded: an evicted
#: program is freed, JAX's own caches of it too, and its maps are returned. 24 programs
#: are the (baseline, initial islands, their scores, iteration) of 6 search
#: configurations, or of 4 batched ones (baseline, their scores, batch draw and settle per
#: number of rows; the initial islands and `evolve` shared); a script that cycles through
#: more than that compiles again.
COMPILED_MAX = 24
_STATS = {"compiles": 0}


#: XLA options of the search programs on CPU: LLVM's `-O1` instead of its default
#: pipeline, and XLA:CPU's elemental emitters instead of its MLIR fusion emitters. The
#: iteration is hundreds of small kernels (~960 LLVM modules) and compiling them is most
#: of a fit's start-up; both compile them faster at the same run time, as `python -m
#: symjax_sr.bench search` against the same command with `--xla-defaults` (which empties
#: this) measures.
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}


def compiler_options() -> dict:
    """XLA options for the search programs: `CPU_COMPILER_OPTIONS` on CPU, elsewhere XLA's
    defaults."""
    return dict(CPU_COMPILER_OPTIONS) if jax.default_backend() == "cpu" else {}


def _compiled(fn, ev, opts, static: dict | None = None, **dynamic):
    """`fn(evaluator=ev, opts=opts, **static, **dynamic)`, compiled ahead of time for these
    shapes and taken from the bounded cache shared by every fit in the process; call it
    with `**dynamic`."""
    static = static or {}
    leaves, treedef = jax.tree.flatten(dynamic)
    xla = compiler_options()
    key = (fn, opts, ev, tuple(sorted(static.items())), treedef,
           tuple((jnp.shape(x), str(jnp.result_type(x))) for x in leaves),  # arrays or shapes
           tuple(sorted(xla.items())))
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key]
    compiled = fn.lower(evaluator=ev, opts=opts, **static, **dynamic).compile(xla)
    _STATS["compiles"] += 1
    _COMPILED[key] = compiled
    evicted = set()
    while len(_COMPILED) > COMPILED_MAX:
        evicted.add(_COMPILED.popitem(last=False)[0][0])
    _release_traces(evicted)
    return compiled


def _release_traces(fns) -> None:
    """Drop JAX's own caches of `fns` (their traces, lowerings and executables), which
    would otherwise keep every evicted program alive, memory maps and all; the programs
    still in `_COMPILED` are held there directly and stay usable."""
    for fn in fns:
        fn.clear_cache()


def compile_count() -> int:
    """How many search programs this process has compiled (cache misses of `_compiled`)."""
    return _STATS["compiles"]


def clear_compiled() -> None:
    """Free every compiled search program held for reuse (the next fit compiles anew)."""
    fns = {key[0] for key in _COMPILED}
    _COMPILED.clear()
    _release_traces(fns)


def padded_rows(n: int) -> int:
    """The row count a search of `n` rows runs at, so that fits of similar size share one
    compiled iteration instead of compiling their own: 32 or 64 up to 64 rows (where the
    per-expression overhead dominates the cost), above that `n` rounded up to one of eight
    steps per octave (at most 12.5% more rows)."""
    if n <= 64:
        return 32 if n <= 32 else 64
    octave = 1 << (n.bit_length() - 4)  # n in [8·octave, 16·octave)
    return -(-n // octave) * octave


def _pad_rows(X, y, weights, n: int):
    """Pad to `n` rows with copies of the first row at weight 0: they change no loss,
    and stay inside every operator's domain exactly when the first row does."""
    extra = n - X.shape[0]
    w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if extra == 0:
        return X, y, w
    return (np.concatenate([X, np.repeat(X[:1], extra, axis=0)]),
            np.concatenate([y, np.repeat(y[:1], extra)]),
            np.concatenate([w, np.zeros(extra)]))


def padded_features(f: int) -> int:
    """The feature count a search of `f` features runs at: the next power of two, at
    least 16, so that fits with 1-16, 17-32 ... features share one compiled search.
    Padded features cost next to nothing: the kernels index `X` by feature, and the
    only per-feature table is the variables' complexity."""
    return max(16, 1 << (f - 1).bit_length())


def _pad_features(X, opts: SearchOptions):
    """Zero columns up to the feature bucket, and options built for that many features.
    The search never draws a padded feature (it is told the real count), so results do
    not depend on the padding."""
    f = X.shape[1]
    fp = padded_features(f)
    if fp == f:
        return X, opts
    X = np.concatenate([X, np.zeros((X.shape[0], fp - f), X.dtype)], axis=1)
    cplx = opts.complexities
    if cplx is not None:
        per_op, per_var, const = cplx
        cplx = (per_op, tuple(per_var) + (1.0,) * (fp - f), const)
    return X, dataclasses.replace(opts, n_features=fp, complexities=cplx)


def _plain(opts: SearchOptions, units) -> bool:
    """Whether the search is over plain expressions under a loss of the prediction per row
    (the case `_finish` and `_loss_floor` handle)."""
    return opts.template is None and not opts.n_params and opts.loss_function is None and \
        opts.loss_function_expression is None and units is None


def _loss_floor(opts: SearchOptions, X, y, weights, units) -> float:
    """`_snap.loss_atol` of the fit's rows for plain expressions, else 0."""
    if not _plain(opts, units):
        return 0.0
    w = None if weights is None else np.asarray(weights, np.float64)
    loss = None if opts.elementwise_loss is l2_loss else opts.elementwise_loss
    return loss_atol(np.asarray(X, np.float64), np.asarray(y, np.float64), w, opts.operators, loss)


def _finish(entries: list[HofEntry], opts: SearchOptions, X, y, weights, units) -> list[HofEntry]:
    """The final hall of fame with constants refitted (`_polish.py`) and snapped to closed
    forms and fractions (`_snap.py`), then the simpler forms SymPy finds under the data's signs
    (`_rewrite.py`): for plain expressions under a loss of the prediction per row (not a
    `loss_function` of the whole prediction, nor with units, whose penalty the checks
    would leave out)."""
    if not _plain(opts, units):
        return entries
    entries = polish_entries(entries, X, y, weights, opts.operators, opts.elementwise_loss)
    entries = snap_entries(entries, X, y, weights, opts.operators, opts.elementwise_loss)
    return rewrite_entries(entries, X, y, weights, opts)


def _batched_step(ev, opts: SearchOptions, state, data, mesh=None):
    """A batched search's iteration as `draw_batch`, `evolve` and `settle`, compiled apart
    so that fits with other numbers of rows reuse `evolve`, which only sees the batch
    (most of the compilation). Where the batch is every row (`whole_batch`) the draw
    returns the data as it is, so it is not compiled. Returns the step and the largest
    program's memory."""
    if mesh is None:
        programs, static, cur = (_DRAW, _EVOLVE, _SETTLE), {}, jnp.int32(0)
    else:
        programs = (sharded_draw, sharded_evolve, sharded_settle)
        static, cur = dict(mesh=mesh), replicate(jnp.int32(0), mesh)
    if whole_batch(data, opts):
        draw, bdata, compiled = (lambda state, data: (state, data, 0.0)), data, []
    else:
        draw = _compiled(programs[0], ev, opts, static, state=state, data=data)
        (_, bdata, _), compiled = draw.out_info, [draw]
    grow = _compiled(programs[1], ev, opts, static, state=state, bdata=bdata, curmaxsize=cur)
    finish = _compiled(programs[2], ev, opts, static, evolved=grow.out_info, data=data)

    def step(state, data, curmaxsize):
        state, bdata, n_batch = draw(state=state, data=data)
        state, n_evals = finish(evolved=grow(state=state, bdata=bdata, curmaxsize=curmaxsize),
                                data=data)
        return state, n_batch + n_evals

    sizes = [program_bytes(c) for c in compiled + [grow, finish]]
    return step, None if None in sizes else max(sizes)


def _early_stop(condition, entries: list[HofEntry]) -> bool:
    if condition is None:
        return False
    if callable(condition):
        return any(bool(condition(e.loss, e.complexity)) for e in entries)
    return any(e.loss <= condition for e in entries)  # a float: `stop_condition` made it one


def run_search(
    X,
    y,
    opts: SearchOptions,
    *,
    weights=None,
    niterations: int = 100,
    random_state: int | None = None,
    timeout_in_seconds: float | None = None,
    max_evals: float | None = None,
    early_stop_condition: float | str | Callable[[float, int], bool] | None = None,
    evaluator: Any = "reference",
    callback: Callable[[SearchState, dict], None] | None = None,
    state: SearchState | None = None,
    dtype=jnp.float32,
    seeds: Population | None = None,
    units: tuple[np.ndarray, np.ndarray | None] | None = None,
    category: np.ndarray | None = None,
    devices=None,
) -> SearchResult:
    """Run the search on `X [N, F]`, `y [N]` (validated here, at the boundary).

    `callback(state, info)` runs after every iteration with `info` holding
    `iteration, num_evals, wall_s, evals_per_s, best_loss` and `hall_of_fame` (the
    entries on the host, taken once per iteration for every consumer). Passing `state`
    continues a previous search (warm start). `seeds` (PySR's `guesses`, at most
    `population_size` trees) start in every island with their constants fitted.
    `units = (x_dims [F, 7], y_dims [7] or None)` (from `_units.feature_dims` and
    `_units.parse_unit`) turns on PySR's dimensional analysis. With `opts.n_params > 0`
    (parametric expressions) `category` gives each row's category code `0 ..
    opts.n_categories - 1`, and `X` has the `n_features - n_params` real features.
    `devices` (an int, or a list of JAX devices) splits the islands over that many
    devices; the result is the one-device result (`_islands.py`).
    """
    mesh = island_mesh(devices, opts.populations)
    X = check_data(X)
    early_stop_condition = stop_condition(early_stop_condition)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"`y` must be 1-D with {X.shape[0]} rows to match X, got shape {y.shape}.")
    if not np.all(np.isfinite(y)):
        raise ValueError("`y` contains NaN or inf; drop those rows before fitting.")
    fit_rows = (X, y, None if weights is None else np.asarray(weights))  # for `_finish`
    n_vars = opts.n_features - opts.n_params
    template = opts.template
    if template is not None:
        n_vars = len(template.variables)
    if X.shape[1] != n_vars:
        raise ValueError(f"X has {X.shape[1]} features but the options were built for {n_vars}.")
    if template is not None:
        if (category is None) != (template.n_categories == 0):
            raise ValueError("A template built for categories needs `category`, and one built "
                             "without them takes none.")
        if category is not None:
            category = np.asarray(category)
            if category.shape != (X.shape[0],) or category.min() < 0 or \
                    category.max() >= template.n_categories:
                raise ValueError("`category` must hold one code in "
                                 f"0..{template.n_categories - 1} per row.")
        if seeds is not None or units is not None:
            raise ValueError("`seeds` and `units` are not supported with template expressions.")
    elif opts.n_params:
        if category is None:
            raise ValueError("Parametric expressions need `category`, one code per row.")
        category = np.asarray(category)
        if category.shape != (X.shape[0],) or category.min() < 0 or category.max() >= opts.n_categories:
            raise ValueError(f"`category` must hold one code in 0..{opts.n_categories - 1} per row.")
        if seeds is not None or units is not None:
            raise ValueError("`seeds` and `units` are not supported with parametric expressions.")
    elif category is not None:
        raise ValueError("`category` is only used by parametric and template expressions.")
    if seeds is not None and not 1 <= len(seeds) <= opts.population_size:
        raise ValueError(f"{len(seeds)} seeds for islands of {opts.population_size}; give 1 to "
                         "population_size of them.")
    ev = get_evaluator(evaluator, opts.operators)
    if template is not None:
        ev = TemplateEvaluator(ev.operators, ev, template, opts.sub_length, opts.const_slots)
        if category is not None:  # the category code travels as the last row of X
            X = np.concatenate([X, category[:, None].astype(X.dtype)], axis=1)
    elif opts.n_params:
        ev = ParametricEvaluator(ev.operators, ev, n_vars, opts.n_params, opts.n_categories,
                                 opts.const_slots)
        # the parameter rows (placeholders) and the category code travel as rows of X
        X = np.concatenate([X, np.zeros((X.shape[0], opts.n_params), X.dtype),
                            category[:, None].astype(X.dtype)], axis=1)
    # Pad rows to a size bucket (weight 0) so that similar fits reuse the compiled
    # iteration. Not with mini-batches (they sample rows) nor with a `loss_function`
    # (it sees every row of the prediction); with a `loss_function_expression` (it sees
    # the data) neither rows nor features are padded.
    n_rows = X.shape[0]
    sees_data = opts.loss_function_expression is not None
    pads = opts.loss_function is None and not sees_data
    # At most `batch_size` rows with batching: the batch is every row (not a resample with
    # repeats), padded to `batch_size` (`whole_batch`), so that the batched programs'
    # `evolve`, most of the compilation, is the one fits of more rows run. A loss that sees
    # every row is not padded: there the search runs unbatched.
    small = opts.batching and opts.batch_size >= n_rows
    if small and not pads:
        opts = dataclasses.replace(opts, batching=False)
    if pads and (small or not opts.batching):
        X, y, weights = _pad_rows(X, y, weights, opts.batch_size if small else padded_rows(n_rows))
    n_real = opts.n_features
    if not sees_data and not opts.n_params and template is None:
        X, opts = _pad_features(X, opts)
    Xt = jnp.asarray(X.T, dtype)
    w = None if weights is None else jnp.asarray(weights, dtype)
    y_ = jnp.asarray(y, dtype)
    t0 = time.perf_counter()
    x_dims = y_dims = None
    if units is not None:
        x_dims, y_dims = units
        if np.shape(x_dims) != (n_real, 7):
            raise ValueError(f"`units` needs dimensions [{n_real}, 7] for the features, got "
                             f"{np.shape(x_dims)}.")
        x_dims = np.concatenate([x_dims, np.zeros((X.shape[1] - n_real, 7))])  # padded features
        x_dims = jnp.asarray(x_dims, jnp.float32)
        y_dims = None if y_dims is None else jnp.asarray(y_dims, jnp.float32)
    data = SearchData(Xt, y_, w, jnp.asarray(0.0, dtype), jnp.int32(n_real), x_dims, y_dims)
    data = data._replace(baseline=_compiled(_BASELINE, ev, opts, data=data)(data=data))
    device = next(iter(Xt.devices()))
    plan = dict(free=available_bytes(device), rows=n_rows, batching=opts.batching,
                lanes=opts.populations * opts.population_size)
    if state is None:
        key = jax.random.key(0 if random_state is None else int(random_state),
                             impl=prng_impl(devices))
        init = dict(key=key, data=data, curmaxsize=jnp.int32(_cur_maxsize(opts, 0, niterations)),
                    seeds=None if seeds is None else jax.tree.map(lambda a: jnp.asarray(a), seeds))
        if seeds is None and template is None and not opts.n_params:
            first = dict(key=key, n_live=jnp.asarray(_live_features(data, opts), jnp.int32))
            static = dict(dtype=np.dtype(dtype))
            pops, key = _compiled(_INIT_ISLANDS, ev, opts, static, **first)(**first)
            init = dict(key=key, pops=pops, data=data, curmaxsize=init["curmaxsize"])
            make = _compiled(_INIT_EVALUATED, ev, opts, **init)
        else:
            make = _compiled(_INIT, ev, opts, **init)
        check_memory(program_bytes(make), **plan)
        state = make(**init)
    if mesh is None:
        state = jax.device_put(state, device)  # a warm start from a sharded search
    else:
        state, data = shard_state(state, mesh), replicate(data, mesh)
    if opts.batching:
        step, memory_bytes = _batched_step(ev, opts, state, data, mesh)
    else:
        if mesh is None:
            step = _compiled(_ITERATION, ev, opts, state=state, data=data,
                             curmaxsize=jnp.int32(0))
        else:
            step = _compiled(sharded_iteration, ev, opts, dict(mesh=mesh), state=state,
                             data=data, curmaxsize=replicate(jnp.int32(0), mesh))
        memory_bytes = program_bytes(step)
    check_memory(memory_bytes, **plan)  # before the first iteration, not mid-run
    compile_s = time.perf_counter() - t0
    start = time.perf_counter()
    num_evals = 0.0
    stopped = "niterations"
    it = 0
    with _sigint_flag() as interrupted:
        for it in range(1, niterations + 1):
            cur = jnp.int32(_cur_maxsize(opts, it - 1, niterations))
            state, evals = step(state=state, data=data, curmaxsize=cur)
            num_evals += float(evals)
            wall = time.perf_counter() - start
            entries = None
            if callback is not None or early_stop_condition is not None:
                entries = hall_of_fame_entries(state, opts)
            if callback is not None:
                best = min((e.loss for e in entries), default=math.inf)
                callback(state, {"iteration": it, "num_evals": num_evals, "wall_s": wall,
                                 "evals_per_s": num_evals / max(wall, 1e-9), "best_loss": best,
                                 "hall_of_fame": entries})
            if interrupted["hit"]:
                stopped = "interrupted"
                break
            if timeout_in_seconds is not None and time.perf_counter() - t0 >= timeout_in_seconds:
                stopped = "timeout"
                break
            if max_evals is not None and num_evals >= max_evals:
                stopped = "max_evals"
                break
            if _early_stop(early_stop_condition, entries or []):
                stopped = "early_stop_condition"
                break
    return SearchResult(
        hall_of_fame=_finish(hall_of_fame_entries(state, opts), opts, *fit_rows, units),
        state=state,
        iterations=it,
        num_evals=num_evals,
        wall_s=time.perf_counter() - start,
        compile_s=compile_s,
        stopped_because=stopped,
        memory_bytes=memory_bytes,
        loss_floor=_loss_floor(opts, *fit_rows, units),
    )

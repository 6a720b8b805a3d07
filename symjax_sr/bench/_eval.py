"""`python -m symjax_sr.bench eval`: evaluation kernels vs a NumPy loop in the same run.

Population: random expressions of 3..31 nodes over {+,-,*,/,sin,cos,exp,log,sqrt,
square,neg}, 3 features, X ~ U(-2, 2), fixed seed. Baseline: a Python loop over
expressions with NumPy vectorised over rows (float32), measured in the same process
(and pyoperon's evaluator when it is installed). Metric: node-evals/s = sum of real
nodes x rows / seconds, for the fused loss (what a search calls every generation).
`flags_agree` and `median_rel_err` compare `predict` with the reference evaluator on the
first 250 expressions; `flags_agree_numpy` compares every flag with the NumPy loop
(which, unlike XLA:CPU, keeps subnormals, so it differs from any XLA kernel slightly).

`--devices N` splits each population over N devices (`shard_map`; on CPU, N host
devices, one per core) with the rows whole on each; P must be a multiple of N.
`devices`, `node_evals_per_s_per_device` and `exprs_per_s_per_device` are reported
(the totals divided by the devices); the NumPy baseline stays one loop on one core.
`--row-block B` sets both kernels' row tile (what the switch kernel's default was chosen by).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings

import numpy as np

from ._host import host_devices

SEED = 0
LENGTH = 32
NCONST = 8
N_FEATURES = 3
BINARY = ("+", "-", "*", "/")
UNARY = ("sin", "cos", "exp", "log", "sqrt", "square", "neg")
STRATEGIES = ("select", "switch")
#: Expressions compared with the reference evaluator for `flags_agree` / `median_rel_err`.
REF_EXPRESSIONS = 250


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--populations", default="1000,4000",
                        help="comma-separated population sizes P (default 1000,4000)")
    parser.add_argument("--rows", default="100,1000,10000",
                        help="comma-separated row counts N (default 100,1000,10000)")
    parser.add_argument("--quick", action="store_true",
                        help="P=1000 only, one timed repeat: under a minute")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help="comma-separated kernels to time (default select,switch)")
    parser.add_argument("--devices", type=int, default=None,
                        help="split each population over N devices (default: one)")
    parser.add_argument("--row-block", type=int, default=None,
                        help="rows per tile of both kernels (default: each kernel's own)")


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--{name} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise SystemExit(f"--{name} needs positive integers, got {text!r}")
    return values


def _numpy_loop(trees, X: np.ndarray, operators):
    """Baseline: Python loop over expressions, NumPy float32 over rows, with ok flags."""
    from symjax_sr._operators import CONST, VAR

    arity = operators.arity_table
    fns = {o: operators.operator(o).numpy_fn for o in range(3, operators.num_opcodes)}
    cols = [np.ascontiguousarray(X[:, f]) for f in range(X.shape[1])]
    N = X.shape[0]
    preds = np.empty((len(trees), N), np.float32)
    oks = np.empty((len(trees), N), bool)
    with np.errstate(all="ignore"):
        for i, (ops, args, vals) in enumerate(trees):
            stack = []
            ok = np.ones(N, bool)
            for o, a, v in zip(ops, args, vals):
                if o == VAR:
                    out = cols[a]
                elif o == CONST:
                    out = np.full(N, v, np.float32)
                elif arity[o] == 1:
                    out = fns[o](stack.pop())
                else:
                    r = stack.pop()
                    out = fns[o](stack.pop(), r)
                ok &= np.isfinite(out)
                stack.append(out)
            preds[i] = stack[0]
            oks[i] = ok
    return preds, oks


def _host_trees(pop):
    trees = []
    for t in pop.trees():
        trees.append((t.op.tolist(), t.arg.tolist(), [np.float32(v) for v in t.value]))
    return trees


#: Short calls are repeated until this many seconds have passed (at most 50 times), so
#: that a few-millisecond kernel's best time is not one unlucky scheduling slice.
MIN_TIMED_S = 0.3


def _time(fn, repeats: int) -> float:
    """Best time of `fn` over at least `repeats` calls (more for short calls, see
    `MIN_TIMED_S`; the NumPy baseline and the kernels are timed the same way)."""
    best, spent, n = float("inf"), 0.0, 0
    while n < repeats or (spent < MIN_TIMED_S and n < 50):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, n = min(best, dt), spent + dt, n + 1
    return best


def _operon_rate(pop, X) -> float | None:
    try:
        import pyoperon  # noqa: F401
    except ImportError:
        return None
    return None  # pyoperon's tree conversion is not wired up; reported as absent


def _split(fn, mesh, n_in: int):
    """`fn(pop, *whole)` with the population split over `mesh` (its rows whole)."""
    import jax
    from jax.sharding import PartitionSpec as Ps

    return jax.shard_map(fn, mesh=mesh, in_specs=(Ps("d"),) + (Ps(),) * (n_in - 1),
                         out_specs=Ps("d"), check_vma=False)


def _run_config(P, N, strategies, repeats, operators, jax, jnp, mesh=None, row_block=None):
    from symjax_sr._evaluate import get_evaluator
    from symjax_sr._random import numpy_rng_population

    pop = numpy_rng_population(SEED, P, operators, N_FEATURES, LENGTH, NCONST,
                               min_size=3, max_size=31)
    pop2 = numpy_rng_population(SEED + 1, P, operators, N_FEATURES, LENGTH, NCONST,
                                min_size=3, max_size=31)
    rng = np.random.default_rng(SEED)
    X = rng.uniform(-2, 2, (N, N_FEATURES)).astype(np.float32)
    y = (X[:, 0] * np.cos(X[:, 1]) + X[:, 2] ** 2).astype(np.float32)
    nodes = int(np.asarray(pop.size).sum())
    trees = _host_trees(pop)

    t_np = _time(lambda: _numpy_loop(trees, X, operators), repeats)
    base_pred, base_ok = _numpy_loop(trees, X, operators)
    np_rate = nodes * N / t_np
    operon = _operon_rate(pop, X)

    Xt, yj = jnp.asarray(X.T), jnp.asarray(y)
    if mesh is not None:
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as Ps

        split, whole = NamedSharding(mesh, Ps("d")), NamedSharding(mesh, Ps())
        pop, pop2 = (jax.device_put(p, split) for p in (pop, pop2))
        Xt, yj = jax.device_put(Xt, whole), jax.device_put(yj, whole)
    devices = 1 if mesh is None else mesh.size
    # The reference evaluator (vmapped scan, [P, S, N] registers) on a subset keeps memory small.
    n_ref = min(P, REF_EXPRESSIONS)
    sub = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[:n_ref], pop)
    ref_pred, ref_ok = (np.asarray(a) for a in jax.jit(get_evaluator("reference", operators).predict)(sub, Xt))
    rows = []
    for name in strategies:
        ev = get_evaluator(name, operators)
        if row_block is not None:
            ev = type(ev)(operators, row_block=row_block)
        traces = {"n": 0}

        def loss_fn(p, xt, yy, ev=ev, traces=traces):
            traces["n"] += 1
            return ev.loss(p, xt, yy)

        def predict_fn(p, xt, ev=ev, traces=traces):
            traces["n"] += 1
            return ev.predict(p, xt)

        if mesh is not None:
            loss_fn, predict_fn = _split(loss_fn, mesh, 3), _split(predict_fn, mesh, 2)
        loss_j, pred_j = jax.jit(loss_fn), jax.jit(predict_fn)
        t0 = time.perf_counter()
        jax.block_until_ready(loss_j(pop, Xt, yj))
        compile_s = time.perf_counter() - t0
        t = _time(lambda f=loss_j: jax.block_until_ready(f(pop, Xt, yj)), repeats)
        pred, ok = (np.asarray(a) for a in pred_j(pop, Xt))
        before = traces["n"]
        jax.block_until_ready(loss_j(pop2, Xt, yj))
        jax.block_until_ready(pred_j(pop2, Xt))
        recompiles = traces["n"] - before

        both = ok[:n_ref] & ref_ok
        with np.errstate(all="ignore"):
            rel = np.abs(pred[:n_ref][both] - ref_pred[both]) / np.maximum(np.abs(ref_pred[both]), 1e-30)
        rows.append({
            "P": P, "N": N,
            "backend": jax.default_backend(),
            "device": str(jax.devices()[0].device_kind),
            "strategy": name,
            "devices": devices,
            "node_evals_per_s": nodes * N / t,
            "exprs_per_s": P / t,
            "node_evals_per_s_per_device": nodes * N / t / devices,
            "exprs_per_s_per_device": P / t / devices,
            "numpy_node_evals_per_s": np_rate,
            "ratio_vs_numpy": (nodes * N / t) / np_rate,
            "operon_node_evals_per_s": operon,
            "seconds": t,
            "compile_s": compile_s,
            "recompiles": recompiles,
            "flags_agree": float((ok[:n_ref] == ref_ok).mean()),
            "flags_agree_numpy": float((ok == base_ok).mean()),
            "median_rel_err": float(np.median(rel)) if rel.size else 0.0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "mean_nodes": nodes / P,
        })
    if len(rows) > 1:
        best = min(rows, key=lambda r: r["seconds"])
        rows.append(dict(best, strategy="auto", chosen=best["strategy"]))
    return rows


def _print_table(rows) -> None:
    head = (f"{'P':>5} {'N':>6} {'strategy':>8} {'dev':>3} {'M node/s':>9} {'per dev':>8} "
            f"{'numpy':>7} {'ratio':>6} "
            f"{'expr/s':>9} {'compile':>7} {'recomp':>6} {'flags':>8} {'rel err':>8} {'RSS MB':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        strategy = r["strategy"] if r["strategy"] != "auto" else f"auto={r['chosen']}"
        print(f"{r['P']:>5} {r['N']:>6} {strategy:>8} {r['devices']:>3} "
              f"{r['node_evals_per_s'] / 1e6:>9.0f} {r['node_evals_per_s_per_device'] / 1e6:>8.0f} "
              f"{r['numpy_node_evals_per_s'] / 1e6:>7.0f} {r['ratio_vs_numpy']:>5.2f}x "
              f"{r['exprs_per_s']:>9.3g} {r['compile_s']:>6.2f}s {r['recompiles']:>6d} "
              f"{r['flags_agree']:>8.6f} {r['median_rel_err']:>8.1e} {r['peak_rss_mb']:>7.0f}",
              flush=True)


def main(args) -> int:
    host_devices(args.devices)  # before JAX starts
    import jax
    import jax.numpy as jnp

    import symjax_sr._kernels  # noqa: F401  (registers the kernels)
    from symjax_sr._operators import make_operator_set

    pops = [1000] if args.quick else _ints(args.populations, "populations")
    rows_n = _ints(args.rows, "rows")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    repeats = 1 if args.quick else 3
    operators = make_operator_set(BINARY, UNARY)
    mesh = None
    if args.devices is not None and args.devices > 1:
        from jax.sharding import Mesh

        if len(jax.devices()) < args.devices:
            raise SystemExit(f"--devices {args.devices} but the {jax.default_backend()} backend "
                             f"has {len(jax.devices())}.")
        bad = [P for P in pops if P % args.devices]
        if bad:
            raise SystemExit(f"--populations {bad} do not split evenly over --devices "
                             f"{args.devices}; use multiples of {args.devices}.")
        mesh = Mesh(np.array(jax.devices()[:args.devices]), ("d",))
    if not args.json:
        print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}) x "
              f"{1 if mesh is None else mesh.size}, "
              f"baseline: Python loop over expressions, NumPy float32 over rows")
    all_rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for P in pops:
            for N in rows_n:
                rows = _run_config(P, N, strategies, repeats, operators, jax, jnp, mesh,
                                   args.row_block)
                all_rows += rows
                if args.json:
                    for r in rows:
                        print(json.dumps(r), flush=True)
                else:
                    _print_table(rows) if P == pops[0] and N == rows_n[0] else _print_rows(rows)
    return 0


def _print_rows(rows) -> None:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        _print_table(rows)
    print("\n".join(buf.getvalue().splitlines()[2:]), flush=True)

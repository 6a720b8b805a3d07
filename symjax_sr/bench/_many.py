"""`python -m symjax_sr.bench many`: B regressions in one program vs B fits in a loop.

Problem `b` is y = c0·x0·x1 + c1·cos(x1) with its own constants c ~ U(0.5, 2) and its
own rows (x ~ U(-2, 2)); all problems share the options below. `search_many` runs the
B problems at once; the baseline runs `run_search` on the same problems one after
another (one compiled program, reused; compilation reported apart). A problem is
solved when its best equation's training NMSE is below 1e-10. Reported per B:
`many_s` (search time, compilation apart), `many_compile_s`, `solved`,
`problems_per_s` (B / many_s), and the loop's `loop_s_per_problem` (measured on
`min(B, --loop-max)` problems), `loop_problems_per_s`, `loop_solved_frac` and
`ratio_vs_loop` (problems per second, batched over looped), and problems solved per
second, `solved_per_s` and `loop_solved_per_s`.

`--devices N` splits the problems of `search_many` over N devices (on CPU, N host
devices, one per core; the loop baseline stays on one): `devices` and
`problems_per_s_per_device` (problems_per_s / devices) are reported too. With it, both
runs draw their random numbers with threefry (the generator of a split search), so
that a run with `--devices 1` is the one-device reference of the same searches.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ._host import host_devices

NMSE_SOLVED = 1e-10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--problems", default="1,16,256", help="comma-separated batch sizes B")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--niterations", type=int, default=20)
    parser.add_argument("--loop-max", type=int, default=16,
                        help="problems the loop baseline runs (its time per problem is measured on these)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evaluator", default="select", help="evaluator of both runs (select, switch)")
    parser.add_argument("--no-constants", action="store_true",
                        help="should_optimize_constants=False in both runs (isolates the optimiser's cost)")
    parser.add_argument("--devices", type=int, default=None,
                        help="split the problems over N devices (default: one, no split)")
    parser.add_argument("--json", action="store_true")


SETTINGS = dict(binary_operators=["+", "-", "*"], unary_operators=["cos"], populations=4,
                population_size=20, ncycles_per_iteration=20, maxsize=12)


def problems(B: int, N: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (B, N, 2))
    c = rng.uniform(0.5, 2.0, (B, 2))
    y = c[:, :1] * X[:, :, 0] * X[:, :, 1] + c[:, 1:] * np.cos(X[:, :, 1])
    return X, y


def _solved(best_loss: float, y: np.ndarray) -> bool:
    return best_loss / float(np.var(y)) < NMSE_SOLVED


def measure(B: int, args) -> dict:
    from symjax_sr import run_search, search_many
    from symjax_sr._params import PYSR_DEFAULTS, build_search_options

    X, y = problems(B, args.rows, args.seed)
    kw = dict(SETTINGS, niterations=args.niterations, should_optimize_constants=not args.no_constants)
    res = search_many(X, y, random_state=args.seed, evaluator=args.evaluator,
                      devices=args.devices, **kw)
    solved = sum(_solved(min(e.loss for e in r.hall_of_fame), y[b]) for b, r in enumerate(res.results))
    opts, _ = build_search_options({**PYSR_DEFAULTS, **kw}, X.shape[2])
    loop_n = min(B, args.loop_max)
    loop_s, loop_solved, loop_compile = 0.0, 0, 0.0
    for b in range(loop_n):
        t = time.perf_counter()
        r = run_search(X[b], y[b], opts, niterations=args.niterations, random_state=args.seed + b,
                       evaluator=args.evaluator, devices=None if args.devices is None else 1)
        elapsed = time.perf_counter() - t
        loop_compile += r.compile_s
        loop_s += elapsed - r.compile_s
        loop_solved += _solved(min(e.loss for e in r.hall_of_fame), y[b])
    per = loop_s / loop_n
    pps = B / res.wall_s
    devices = args.devices or 1
    return {"B": B, "evaluator": args.evaluator, "constants": not args.no_constants,
            "rows": args.rows, "niterations": args.niterations, "devices": devices,
            "many_s": round(res.wall_s, 3), "many_compile_s": round(res.compile_s, 2),
            "solved": int(solved), "problems_per_s": round(pps, 3),
            "problems_per_s_per_device": round(pps / devices, 3),
            "solved_per_s": round(solved / res.wall_s, 4),
            "loop_problems": loop_n, "loop_s_per_problem": round(per, 4),
            "loop_compile_s": round(loop_compile, 2), "loop_problems_per_s": round(1 / per, 3),
            "loop_solved_frac": round(loop_solved / loop_n, 3),
            "loop_solved_per_s": round(loop_solved / loop_s, 4), "ratio_vs_loop": round(pps * per, 2)}


def main(args: argparse.Namespace) -> int:
    host_devices(args.devices)  # before JAX starts
    sizes = [int(b) for b in args.problems.split(",")]
    rows = []
    for B in sizes:
        row = measure(B, args)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        cols = ["B", "many_s", "many_compile_s", "solved", "problems_per_s", "loop_s_per_problem",
                "loop_problems_per_s", "loop_solved_frac", "ratio_vs_loop"]
        print(" | ".join(cols))
        for r in rows:
            print(" | ".join(str(r[c]) for c in cols))
    return 0

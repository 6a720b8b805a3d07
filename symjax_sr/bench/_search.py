"""`python -m symjax_sr.bench search`: one search on a public problem, within a wall-clock budget.

`--problem NAME` (default nguyen-1) is read from `problems.json` (`--problems FILE`,
else `$SYMJAX_SR_PROBLEMS`, else `shared/benchmarks/problems.json` above the working
directory). Training data: the problem's `n` rows (or `--rows`) sampled from its ranges and noise
with `--seed`; test data: 1000 rows with seed `--seed + 10_000`.

Search settings (fixed for every problem): operators
`+ - * /` and `sin cos exp log sqrt`; `maxsize` 20, the `switch` evaluator, every other
option at PySR's default (31 islands of 27 members, 380 cycles per iteration). The budget
(`timeout_in_seconds`) includes compilation, reported separately as `compile_s`; the
search stops after the first iteration that ends past the budget.

`--devices N` splits the islands over N devices of the default backend (on CPU, N host
devices, one per core); the island count (`--populations`, default 31) is then rounded up
to a multiple of N, and the search draws its random numbers with threefry, so that
`--devices 1` and `--devices N` with the same `--populations` run the same search
(compare them with `--niterations`, which stops after that many iterations instead of on
the budget). `exprs_per_s_per_device` is
`exprs_per_s / devices`.

Reported: `evals` counts expressions evaluated as PySR counts them (each candidate's
loss on the data, mini-batches pro rata, plus constant-optimisation loss calls);
`exprs_per_s` = evals / search seconds (compilation excluded). `best_equation` is
PySR's `model_selection="best"` on the Pareto front; `test_r2` is its R^2 on the test
rows (NumPy reference evaluator, float64); `recovered` is SRBench's symbolic-solution
test on it (difference or ratio to the truth a constant after rounding constants to
3 decimals); `recovered_any_front` applies the same test to every front member.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from ._host import host_devices

BINARY = ("+", "-", "*", "/")
UNARY = ("sin", "cos", "exp", "log", "sqrt")
SETTINGS = dict(populations=31, population_size=27, ncycles_per_iteration=380, maxsize=20)
EVALUATOR = "switch"
TEST_ROWS = 1000
TEST_SEED_OFFSET = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--problem", default="nguyen-1", help="problem name (default nguyen-1)")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="wall-clock seconds, compilation included (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random_state and data seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--problems", default=None, help="path of problems.json")
    parser.add_argument("--devices", type=int, default=None,
                        help="split the islands over N devices (default: one, no split)")
    parser.add_argument("--populations", type=int, default=None,
                        help="islands (default 31, rounded up to a multiple of --devices)")
    parser.add_argument("--rows", type=int, default=None,
                        help="training rows (default: the problem's n)")
    parser.add_argument("--niterations", type=int, default=None,
                        help="stop after this many iterations (default: on the budget only)")
    parser.add_argument("--xla-defaults", action="store_true",
                        help="compile with XLA's default options instead of the search's "
                             "(`_run.CPU_COMPILER_OPTIONS`), to measure what they change")


def _finite_or_none(x: float):
    return float(x) if math.isfinite(x) else None


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """1 - SSE/SST; -inf when a prediction is not finite."""
    if not np.all(np.isfinite(pred)):
        return -math.inf
    sst = float(np.sum((y - np.mean(y)) ** 2))
    sse = float(np.sum((y - pred) ** 2))
    return 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else -math.inf)


def settings(devices: int | None, populations: int | None = None) -> dict:
    """The search settings, with the islands a multiple of `devices`."""
    n = SETTINGS["populations"] if populations is None else populations
    return dict(SETTINGS, populations=-(-n // (devices or 1)) * (devices or 1))


def run(problem_name: str, budget: float, seed: int, problems_file=None, devices=None,
        niterations=None, populations=None, rows=None, xla_defaults=False) -> dict:
    """Run the benchmark and return the report (the JSON keys of the contract)."""
    host_devices(devices)  # before JAX starts
    import jax

    from symjax_sr import _run, make_operator_set, tree_to_string, tree_to_sympy
    from symjax_sr._numpy_eval import evaluate_tree_numpy
    from symjax_sr._options import SearchOptions
    from symjax_sr._selection import compute_scores, select_index

    from ._problems import load_problems, symbolically_equivalent

    problems = load_problems(problems_file)
    if problem_name not in problems:
        import difflib

        close = difflib.get_close_matches(problem_name, problems, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise SystemExit(f"Unknown --problem {problem_name!r}.{hint} Known: {', '.join(problems)}")
    problem = problems[problem_name]
    X, y = problem.sample(rows, seed=seed)
    X_test, y_test = problem.sample(TEST_ROWS, seed=seed + TEST_SEED_OFFSET)
    names = problem.variable_names
    ops = make_operator_set(BINARY, UNARY)
    config = settings(devices, populations)
    opts = SearchOptions(operators=ops, n_features=X.shape[1], **config)

    saved = _run.CPU_COMPILER_OPTIONS
    if xla_defaults:  # programs are cached per compile options, so none is reused
        _run.CPU_COMPILER_OPTIONS = {}
    try:
        t0 = time.perf_counter()
        result = _run.run_search(X, y, opts, niterations=niterations or 10**9, random_state=seed,
                                 timeout_in_seconds=budget, evaluator=EVALUATOR, devices=devices)
        wall = time.perf_counter() - t0
        xla = _run.compiler_options()
    finally:
        _run.CPU_COMPILER_OPTIONS = saved

    front = result.pareto_front
    loss = [e.loss for e in front]
    cplx = [e.complexity for e in front]
    best = select_index(loss, compute_scores(loss, cplx), "best")
    truth = problem.truth()
    models = [tree_to_sympy(e.tree, ops, names) for e in front]
    points = dict(zip(problem.symbols(), X_test[:64].T, strict=True))
    recovered = [symbolically_equivalent(m, truth, points=points, domain=problem.domain())
                 for m in models]
    entry = front[best]
    pred, _, _ = evaluate_tree_numpy(entry.tree, X_test, ops)
    return {
        "problem": problem.name,
        "seed": seed,
        "budget_s": budget,
        "rows": int(X.shape[0]),
        "wall_s": wall,
        "compile_s": result.compile_s,
        "iterations": result.iterations,
        "evals": result.num_evals,
        "exprs_per_s": result.num_evals / max(result.wall_s, 1e-9),
        "devices": devices or 1,
        "device_kind": jax.devices()[0].platform,
        "exprs_per_s_per_device": result.num_evals / max(result.wall_s, 1e-9) / (devices or 1),
        "best_equation": tree_to_string(entry.tree, ops, names),
        "test_r2": _finite_or_none(r2_score(y_test, pred)),
        "recovered": bool(recovered[best]),
        "recovered_any_front": bool(any(recovered)),
        "front": [
            {"complexity": e.complexity, "loss": _finite_or_none(e.loss),
             "equation": tree_to_string(e.tree, ops, names)}
            for e in front
        ],
        "truth": problem.formula,
        "stopped_because": result.stopped_because,
        "compiler_options": xla,
        "settings": dict(config, evaluator=EVALUATOR, binary=BINARY, unary=UNARY),
    }


def main(args: argparse.Namespace) -> int:
    report = run(args.problem, args.budget, args.seed, args.problems, args.devices,
                 args.niterations, args.populations, args.rows, args.xla_defaults)
    if args.json:
        print(json.dumps(report))
        return 0
    r = report
    print(f"{r['problem']} (truth {r['truth']}), seed {r['seed']}, budget {r['budget_s']:g} s")
    print(f"  wall {r['wall_s']:.1f} s (compile {r['compile_s']:.1f} s), {r['iterations']} "
          f"iterations, {r['evals']:.0f} evals, {r['exprs_per_s']:.0f} exprs/s "
          f"on {r['devices']} {r['device_kind']} device(s), {r['exprs_per_s_per_device']:.0f} per "
          f"device (stopped: {r['stopped_because']})")
    print(f"  best: {r['best_equation']}")
    r2 = "n/a" if r["test_r2"] is None else f"{r['test_r2']:.6f}"
    print(f"  test R^2 {r2}, recovered {r['recovered']} (any front member: "
          f"{r['recovered_any_front']})")
    print("  front:")
    for row in r["front"]:
        loss = "inf" if row["loss"] is None else f"{row['loss']:.4g}"
        print(f"    {row['complexity']:>3}  {loss:>11}  {row['equation']}")
    return 0

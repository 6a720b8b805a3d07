"""Batched constant fitting against a Python loop of scipy, measured in the same run.

Two tasks:

- `sin`: every member is `c0·x0·sin(c1·x1)` (true constants 2.5, 1.3; the mirror
  solution -2.5, -1.3 is the same function), starting from `U(-3, 3)`; "recovered"
  means both constants within 1e-2 of a true solution.
- `random`: random expressions of 3..20 nodes over 3 features fitted to the same
  target; only members with constants and a finite loss are fitted (what a search
  would select); "recovered" there means the final loss is at most scipy's
  (×1.001 + 1e-9) on the members scipy was run on.

The scipy baseline fits every member from the same starts (`restart_starts`, same key)
with `least_squares(method="lm")` for LM and `minimize(method="BFGS")` for BFGS, with
finite-difference derivatives, a NumPy float64 objective and the same iteration budget
(`maxiter = iterations` for BFGS, `max_nfev = (iterations + 1)·(k + 1)` for LM, k
constants), keeping the best start. When `--scipy-members` is smaller than the
population it runs on that many members and extrapolates its time per member
(`scipy_extrapolated` in the output says so).

`--breakdown` adds `breakdown_ms`: one call of each piece of a Levenberg-Marquardt
iteration on the same lanes (primal `predict`, fused `loss`, the Gauss-Newton pass, the
three trial losses), to see where the optimiser's time goes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .._constants import (
    ConstantOptions,
    constant_count,
    optimize_constants,
    population_loss,
    resolve_algorithm,
    restart_starts,
)
from .._evaluate import _EVALUATORS, get_evaluator
from .._operators import CONST, VAR, make_operator_set
from .._random import numpy_rng_population
from .._tree import Tree, stack_trees

TRUE = np.array([2.5, 1.3])


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ConstantOptions()
    parser.add_argument("--populations", type=_ints, default=[200, 1000],
                        help="population sizes P (comma-separated)")
    parser.add_argument("--rows", type=_ints, default=[100, 1000],
                        help="data rows N (comma-separated)")
    parser.add_argument("--methods", default="LM,BFGS", help="algorithms to run")
    parser.add_argument("--tasks", default="sin,random", help="tasks: sin, random")
    parser.add_argument("--iterations", type=int, default=defaults.iterations)
    parser.add_argument("--restarts", type=int, default=defaults.nrestarts)
    parser.add_argument("--nconst", type=int, default=8, help="constant table size K")
    parser.add_argument("--narrow-widths", type=_ints, default=list(defaults.narrow_widths),
                        help="tangent widths compiled besides K (ConstantOptions.narrow_widths; "
                             "empty string: the full width only, as the search runs)")
    parser.add_argument("--length", type=int, default=32, help="max expression length L")
    parser.add_argument("--evaluator", default=None,
                        help="evaluation kernel (default: the fastest registered)")
    parser.add_argument("--scipy-members", type=int, default=100,
                        help="run scipy on this many members and extrapolate (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs of each side (after a warm-up call for ours); the "
                             "fastest counts")
    parser.add_argument("--quick", action="store_true",
                        help="P=200, N=100, 40 scipy members: a smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the optimiser's pieces on the same lanes (breakdown_ms)")


# --------------------------------------------------------------------------- data


def _sin_task(P: int, N: int, length: int, nconst: int, rng: np.random.Generator):
    ops = make_operator_set(["+", "-", "*", "/"], ["sin", "cos", "exp", "log"])
    mul, sin = ops.opcode("*"), ops.opcode("sin")
    tree = Tree([CONST, VAR, mul, CONST, VAR, mul, sin, mul], [0, 0, 0, 0, 1, 0, 0, 0],
                np.zeros(8))
    X = rng.uniform(-2, 2, (N, 3)).astype(np.float32)
    y = (TRUE[0] * X[:, 0] * np.sin(TRUE[1] * X[:, 1])).astype(np.float32)
    inits = rng.uniform(-3, 3, (P, 2))
    pop = stack_trees([tree.with_constants(c) for c in inits], length, nconst)
    return ops, pop, X, y


def _random_task(P: int, N: int, length: int, nconst: int, seed: int, rng):
    ops = make_operator_set(["+", "-", "*", "/"], ["sin", "cos", "exp", "log"])
    X = rng.uniform(-2, 2, (N, 3)).astype(np.float32)
    y = (TRUE[0] * X[:, 0] * np.sin(TRUE[1] * X[:, 1]) + 0.5 * X[:, 2]).astype(np.float32)
    pop = numpy_rng_population(seed, P, ops, 3, length, nconst, min_size=3, max_size=20)
    return ops, pop, X, y


def _recovered_sin(const: np.ndarray) -> np.ndarray:
    c = const[:, :2]
    return np.all(np.abs(c - TRUE) < 1e-2, 1) | np.all(np.abs(c + TRUE) < 1e-2, 1)


# --------------------------------------------------------------------------- scipy


def _numpy_model(tree: Tree, ops, X: np.ndarray):
    """`f(c) -> pred [N]` in float64 NumPy for one expression (the scipy objective)."""
    X = X.astype(np.float64)
    N = X.shape[0]
    arity = ops.arity_table
    program, slot = [], 0
    for o, a in zip(tree.op, tree.arg, strict=True):
        if o == VAR:
            program.append((0, int(a), None))
        elif o == CONST:
            program.append((1, slot, None))
            slot += 1
        else:
            program.append((2 + int(arity[o]) - 1, 0, ops.operator(o).numpy_fn))

    def f(c):
        stack = []
        for kind, a, fn in program:
            if kind == 0:
                stack.append(X[:, a])
            elif kind == 1:
                stack.append(np.full(N, c[a]))
            elif kind == 2:
                stack.append(fn(stack.pop()))
            else:
                r = stack.pop()
                stack.append(fn(stack.pop(), r))
        return stack[0]

    return f


def _scipy_fit(method: str, f, y: np.ndarray, starts: np.ndarray, iterations: int):
    """Best loss and constants over `starts [R, k]` with scipy; (inf, None) if all fail."""
    from scipy.optimize import least_squares, minimize

    N = y.shape[0]
    y = y.astype(np.float64)
    best, best_c = np.inf, None
    k = starts.shape[1]
    for x0 in starts:
        x0 = x0.astype(np.float64)
        try:
            if method == "LM":
                def resid(c):
                    r = (f(c) - y) / np.sqrt(N)
                    return np.where(np.isfinite(r), r, 1e10)

                if not np.all(np.isfinite(f(x0))):
                    continue
                res = least_squares(resid, x0, method="lm", max_nfev=(iterations + 1) * (k + 1))
                c = res.x
            else:
                def loss(c):
                    v = np.mean((f(c) - y) ** 2)
                    return v if np.isfinite(v) else np.inf

                if not np.isfinite(loss(x0)):
                    continue
                c = minimize(loss, x0, method="BFGS", options={"maxiter": iterations}).x
        except (ValueError, np.linalg.LinAlgError):
            continue
        value = np.mean((f(c) - y) ** 2)
        if np.isfinite(value) and value < best:
            best, best_c = value, c
    return best, best_c


def _scipy_loop(method, pop, ops, X, y, starts, members, iterations):
    trees = [pop.tree(int(i)) for i in members]
    counts = [len(t.constants) for t in trees]
    models = [_numpy_model(t, ops, X) for t in trees]
    losses, consts = [], []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for j, i in enumerate(members):
            loss, c = _scipy_fit(method, models[j], y, starts[:, i, : counts[j]], iterations)
            losses.append(loss)
            consts.append(c)
        seconds = time.perf_counter() - t0
    return seconds, np.array(losses), consts


# --------------------------------------------------------------------------- driver


def _default_evaluator() -> str:
    try:
        from .. import _kernels  # noqa: F401  (registers the fast kernels)
    except ImportError:
        return "reference"
    for name in ("auto", "select"):
        if name in _EVALUATORS:
            return name
    return "reference"


def _breakdown(evaluator, pop, members, count, Xt, yj, restarts: int,
               narrow_widths: tuple[int, ...]) -> dict:
    """Milliseconds of one call of each piece of an LM iteration on the run's lanes
    (members x (1 + restarts)): a primal `predict`, the fused loss, the Gauss-Newton
    pass (primal + one tangent per constant slot + JᵀJ) and the three trial losses."""
    from .._optimise._objective import Objective

    R = 1 + restarts

    def rep(a):
        a = np.asarray(a)[members]
        return jnp.asarray(np.tile(a, (R,) + (1,) * (a.ndim - 1)))

    free = np.arange(pop.const.shape[1])[None] < count[members][:, None]
    obj = Objective(evaluator, rep(pop.op), rep(pop.arg), jnp.asarray(np.tile(free, (R, 1))),
                    Xt, yj, None, groups=R,  # the restarts share structures, as in the run
                    narrow_widths=narrow_widths)
    c = rep(pop.const)
    pieces = {
        "predict": jax.jit(lambda o, c: o.predict(c)),
        "loss": jax.jit(lambda o, c: o.loss(c)),
        "gauss_newton": jax.jit(lambda o, c: o.gauss_newton(c)),
        "trials": jax.jit(lambda o, c: o.loss_many(jnp.stack([c, c, c]))),
    }
    out = {}
    for name, fn in pieces.items():
        jax.block_until_ready(fn(obj, c))
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(obj, c))
            best = min(best, time.perf_counter() - t0)
        out[name] = round(1000 * best, 2)
    out["lanes"] = int(c.shape[0])
    return out


def _run_one(task, method, P, N, args, rng):
    if task == "sin":
        ops, pop, X, y = _sin_task(P, N, args.length, args.nconst, rng)
    else:
        ops, pop, X, y = _random_task(P, N, args.length, args.nconst, args.seed, rng)
    name = args.evaluator or _default_evaluator()
    if name != "reference":
        from .. import _kernels  # noqa: F401  (registers the fast kernels)
    evaluator = get_evaluator(name, ops)
    options = ConstantOptions(algorithm=method, iterations=args.iterations,
                              nrestarts=args.restarts, narrow_widths=tuple(args.narrow_widths))
    Xt, yj = jnp.asarray(X.T), jnp.asarray(y)
    key = jax.random.key(args.seed + 1)
    count = np.asarray(constant_count(pop))
    # Members a search would fit: with constants and a finite loss (non-finite random
    # expressions would only cost lanes; scipy skips them at once).
    before = population_loss(evaluator, pop, Xt, yj)
    fit = (count > 0) & np.isfinite(np.asarray(before))
    mask = jnp.asarray(fit)
    capacity = max(int(fit.sum()), 1)  # compact: unselected members cost nothing

    def call():
        return jax.block_until_ready(
            optimize_constants(pop, Xt, yj, evaluator=evaluator, key=key, options=options,
                               mask=mask, loss_before=before, capacity=capacity)
        )

    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    seconds = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = call()
        seconds = min(seconds, time.perf_counter() - t0)

    members = np.flatnonzero(fit)
    n_sub = len(members) if args.scipy_members <= 0 else min(args.scipy_members, len(members))
    sub = members[:n_sub]
    starts = np.asarray(restart_starts(pop.const, jnp.asarray(count), args.restarts, key=key))
    s_seconds = float("inf")
    for _ in range(args.repeats):
        t, s_loss, s_const = _scipy_loop(method, pop, ops, X, y, starts, sub, args.iterations)
        s_seconds = min(s_seconds, t)
    scale = len(members) / max(n_sub, 1)
    scipy_seconds = s_seconds * scale

    loss = np.asarray(res.loss)
    const = np.asarray(res.pop.const)
    if task == "sin":
        recovered = float(np.mean(_recovered_sin(const)))
        s_rec = float(np.mean([c is not None and _recovered_sin(c[None])[0] for c in s_const]))
    else:
        ok = np.isfinite(s_loss)
        ours = loss[sub][ok]
        recovered = float(np.mean(ours <= s_loss[ok] * 1.001 + 1e-9)) if ok.any() else float("nan")
        s_rec = float("nan")
    finite = loss[members][np.isfinite(loss[members])]
    return {
        "task": task,
        "method": resolve_algorithm(options),
        "P": P,
        "N": N,
        "iterations": args.iterations,
        "restarts": args.restarts,
        "seconds": round(seconds, 4),
        "recovered_frac": round(recovered, 4),
        "median_final_loss": float(np.median(finite)) if finite.size else float("inf"),
        "scipy_seconds": round(scipy_seconds, 4),
        "ratio_vs_scipy": round(scipy_seconds / seconds, 2),
        "compile_seconds": round(max(first - seconds, 0.0), 2),
        "repeats": args.repeats,
        "narrow_widths": list(options.narrow_widths),
        "n_evals": int(res.n_evals),
        "members": int(len(members)),
        "scipy_members": int(n_sub),
        "scipy_extrapolated": bool(n_sub < len(members)),
        "scipy_recovered_frac": None if np.isnan(s_rec) else round(s_rec, 4),
        "evaluator": type(evaluator).__name__,
        "nconst": args.nconst,
        "length": args.length,
        **({"breakdown_ms": _breakdown(evaluator, pop, members, count, Xt, yj, args.restarts,
                                               options.narrow_widths)}
           if getattr(args, "breakdown", False) else {}),
    }


def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.populations, args.rows = [200], [100]
        args.scipy_members = min(args.scipy_members, 40) if args.scipy_members > 0 else 40
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in tasks:
        if t not in ("sin", "random"):
            print(f"unknown task {t!r}; valid: sin, random", file=sys.stderr)
            return 2
    rows = []
    header = ("task", "method", "P", "N", "it", "rs", "seconds", "recovered", "med loss",
              "scipy s", "ratio", "compile s", "evals")
    if not args.json:
        print(" ".join(f"{h:>10}" for h in header))
    for task in tasks:
        for P in args.populations:
            for N in args.rows:
                for method in methods:
                    rng = np.random.default_rng(args.seed)
                    row = _run_one(task, method, P, N, args, rng)
                    rows.append(row)
                    if args.json:
                        print(json.dumps(row), flush=True)
                    else:
                        vals = (row["task"], row["method"], P, N, row["iterations"],
                                row["restarts"], row["seconds"], row["recovered_frac"],
                                f"{row['median_final_loss']:.2e}", row["scipy_seconds"],
                                row["ratio_vs_scipy"], row["compile_seconds"], row["n_evals"])
                        print(" ".join(f"{v!s:>10}" for v in vals), flush=True)
                        if "breakdown_ms" in row:
                            print(f"{'':>10} one call, ms: {row['breakdown_ms']}", flush=True)
    if not args.json:
        extrapolated = [r for r in rows if r["scipy_extrapolated"]]
        if extrapolated:
            print(f"scipy timed on {extrapolated[0]['scipy_members']} members per row and "
                  "extrapolated per member; evaluator "
                  f"{rows[0]['evaluator']}; recovered (random) = ours <= scipy*1.001 on that "
                  "subset.")
    return 0

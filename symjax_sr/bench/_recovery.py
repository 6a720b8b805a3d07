"""`python -m symjax_sr.bench recovery`: recovery over the public problems, peers in the same run.

For each problem of the chosen suites and each seed: the problem's training rows are
sampled from its ranges and noise (`--seed`), 1000 noiseless test rows with seed
`seed + test_seed_offset`; every method gets the same data, the same wall-clock budget
(compilation included for symjax_sr, also reported alone as `compile_s`), the same
operator set (`^` only for the methods that have it) and the same cores. Settings come
from `configs/bench/recovery.toml` (`--config FILE`); flags override them.

Metrics, as SRBench defines them: `test_r2`, `test_nmse` (MSE / variance of y),
`recovered_numeric` (test NMSE < 1e-10; R^2 > 0.999 for a noisy problem), `symbolic`
(constants rounded to 4 significant digits, tiny ones zeroed: truth - model or
model / truth simplifies to a constant, variables sampled from positive ranges read as
positive, so `sqrt(a)*sqrt(b)` is `sqrt(a*b)` on the problem's domain), `size` (nodes of
the rounded SymPy model).
Noiseless problems stop early once the training NMSE is below 1e-10, for the methods
that can stop early (symjax_sr, gplearn); `time_to_solution_s` is the wall time of a
numerically recovered row.

Rows go to the CSV as they finish; rerunning with the same `--out` skips the rows
already there (same method, problem, seed and budget; rows that failed with an error
are run again), so an interrupted run resumes.
A peer that is not installed gets a row with `status=skipped`. A markdown summary
per suite is printed (and written next to the CSV); with matplotlib, a PNG of
symjax_sr's Pareto front per problem and seed goes to `<out stem>_fronts/`.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import sympy

METHODS = ("symjax_sr", "pyoperon", "gplearn")
COLUMNS = (
    "method", "suite", "problem", "seed", "budget_s", "status", "test_r2", "test_nmse",
    "recovered_numeric", "symbolic", "size", "equation", "wall_s", "compile_s",
    "time_to_solution_s", "evals", "truth", "note",
)
NUMERIC_NMSE = 1e-10
NOISY_R2 = 0.999
SIGNIFICANT = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="TOML settings (default configs/bench/recovery.toml)")
    parser.add_argument("--suites", nargs="+", default=None, help="suites to run")
    parser.add_argument("--problem", nargs="+", default=None, dest="names",
                        help="only these problems (names from problems.json)")
    parser.add_argument("--budget", type=float, default=None, help="seconds per problem and method")
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--peers", nargs="*", default=None,
                        help="peers to run beside symjax_sr (pyoperon gplearn; none for none)")
    parser.add_argument("--out", default="recovery_results.csv", help="CSV of the rows (resumable)")
    parser.add_argument("--problems", default=None, help="path of problems.json")
    parser.add_argument("--quick", action="store_true", help="the config's [quick] problems and budget")
    parser.add_argument("--json", action="store_true", help="print each row as a JSON line")


# ---------------------------------------------------------------------------- settings


def default_config_path() -> Path:
    from symjax_sr._config import config_dir

    return Path(config_dir()) / "bench" / "recovery.toml"


def load_settings(args: argparse.Namespace) -> dict:
    """The config file, then `[quick]` with `--quick`, then the flags."""
    import tomllib

    path = Path(args.config) if args.config else default_config_path()
    if not path.is_file():
        raise SystemExit(f"--config {str(path)!r} does not exist.")
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    known = {"suites", "budget", "seeds", "peers", "binary_operators", "unary_operators",
             "test_rows", "test_seed_offset", "threads", "symjax_sr", "quick", "problems"}
    unknown = set(cfg) - known
    if unknown:
        raise SystemExit(f"Unknown keys {sorted(unknown)} in {path}; known: {sorted(known)}.")
    quick = cfg.pop("quick", {})
    cfg.setdefault("problems", None)
    if args.quick:
        cfg.update(quick)
    for key, value in (("suites", args.suites), ("budget", args.budget), ("seeds", args.seeds),
                       ("peers", args.peers), ("problems", args.names)):
        if value is not None:
            cfg[key] = value
    if args.names is not None or args.suites is not None:
        cfg["problems"] = args.names  # explicit suites drop the quick problem list
    cfg["peers"] = [p for p in cfg.get("peers", []) if p != "none"]
    bad = [p for p in cfg["peers"] if p not in METHODS[1:]]
    if bad:
        raise SystemExit(f"Unknown --peers {bad}; known: {list(METHODS[1:])} (or none).")
    cfg["config_path"] = str(path)
    return cfg


# ----------------------------------------------------------------------------- metrics


def round_significant(expr: sympy.Expr, digits: int = SIGNIFICANT) -> sympy.Expr:
    """Floats to `digits` significant digits (as exact rationals, so that SymPy cancels
    them), those below 1e-4 in magnitude to 0 (SRBench's threshold)."""
    repl = {}
    for a in expr.atoms(sympy.Float):
        v = float(a)
        repl[a] = sympy.Integer(0) if abs(v) < 1e-4 else sympy.Rational(f"{v:.{digits}g}")
    return expr.xreplace(repl)


def model_size(expr: sympy.Expr) -> int:
    """Nodes of the expression tree (SRBench's model size)."""
    return sum(1 for _ in sympy.preorder_traversal(expr))


def symbolic_match(model: sympy.Expr, truth: sympy.Expr, points, domain=None) -> bool:
    from ._problems import symbolically_equivalent

    return symbolically_equivalent(round_significant(model), truth, digits=12, points=points,
                                   domain=domain)


def scores(y: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(R^2, NMSE); (-inf, inf) when a prediction is not finite."""
    pred = np.broadcast_to(np.asarray(pred, np.float64), y.shape)
    if not np.all(np.isfinite(pred)):
        return -math.inf, math.inf
    var = float(np.var(y))
    mse = float(np.mean((y - pred) ** 2))
    nmse = mse / var if var > 0 else (0.0 if mse == 0 else math.inf)
    return 1.0 - nmse, nmse


def _evaluate(expr: sympy.Expr, symbols, X: np.ndarray) -> np.ndarray:
    f = sympy.lambdify(symbols, expr, "numpy")
    with np.errstate(all="ignore"):
        out = np.asarray(f(*X.T), dtype=np.complex128) * np.ones(X.shape[0])
    return np.where(np.abs(out.imag) > 1e-9 * (1 + np.abs(out.real)), np.nan, out.real)


# ------------------------------------------------------------------------------ methods


class Skipped(Exception):
    pass


def _run_symjax(problem, X, y, cfg, seed, budget, stop_nmse):
    from symjax_sr import PySRRegressor

    params = dict(cfg.get("symjax_sr", {}))
    model = PySRRegressor(
        binary_operators=list(cfg["binary_operators"]), unary_operators=list(cfg["unary_operators"]),
        niterations=10**9, timeout_in_seconds=budget, random_state=seed, verbosity=0,
        progress=False, temp_equation_file=True,
        early_stop_condition=None if stop_nmse is None else stop_nmse * float(np.var(y)),
        **params,
    )
    # positional names, as for the peers (a problem's names may clash with SymPy's, e.g. gamma)
    model.fit(X, y)
    info = model.fit_info_[0]
    eqs = model.equations_
    front = [(int(c), float(l)) for c, l in zip(eqs["complexity"], eqs["loss"], strict=True)]
    names = {sympy.Symbol(f"x{i}"): s for i, s in enumerate(problem.symbols())}
    return model.sympy().xreplace(names), {"compile_s": info["compile_s"],
                                           "evals": info["num_evals"], "front": front}


def _operon_symbols(cfg) -> str:
    names = {"+": "add", "-": "sub", "*": "mul", "/": "div", "^": "pow", "sin": "sin",
             "cos": "cos", "exp": "exp", "log": "log", "sqrt": "sqrt"}
    ops = list(cfg["binary_operators"]) + list(cfg["unary_operators"])
    return ",".join([names[o] for o in ops if o in names] + ["constant", "variable"])


def _run_pyoperon(problem, X, y, cfg, seed, budget, stop_nmse):
    if importlib.util.find_spec("pyoperon") is None:
        raise Skipped("pyoperon is not installed (pip install pyoperon)")
    from pyoperon.sklearn import SymbolicRegressor

    # the time limit governs: its default evaluation and generation limits would stop it
    # early, with budget left
    model = SymbolicRegressor(allowed_symbols=_operon_symbols(cfg), max_time=max(1, int(budget)),
                              max_evaluations=10**12, generations=10**9,
                              n_threads=int(cfg.get("threads", 1)), random_state=seed)
    model.fit(X, y)
    names = [f"X{i + 1}" for i in range(X.shape[1])]
    text = model.get_model_string(model.model_, 16, names)
    local = {n: s for n, s in zip(names, problem.symbols(), strict=True)}
    return sympy.sympify(text, locals=local), {"evals": model.stats_.get("evaluation_count")}


def _gplearn_functions(cfg):
    from gplearn.functions import make_function

    def _exp(x):
        with np.errstate(over="ignore"):
            return np.where(x < 100, np.exp(np.minimum(x, 100)), 0.0)

    table = {"+": "add", "-": "sub", "*": "mul", "/": "div", "sin": "sin", "cos": "cos",
             "log": "log", "sqrt": "sqrt"}
    fs = [table[o] for o in list(cfg["binary_operators"]) + list(cfg["unary_operators"]) if o in table]
    if "exp" in cfg["unary_operators"]:
        fs.append(make_function(function=_exp, name="exp", arity=1))
    return fs


def _gplearn_sympy(program: str, symbols) -> sympy.Expr:
    """gplearn's program string as SymPy, with its protected operators' usual reading."""
    local = {
        "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b, "sin": sympy.sin, "cos": sympy.cos, "exp": sympy.exp,
        "log": lambda a: sympy.log(sympy.Abs(a)), "sqrt": lambda a: sympy.sqrt(sympy.Abs(a)),
    }
    local.update({f"X{i}": s for i, s in enumerate(symbols)})
    return sympy.sympify(program, locals=local)


def _run_gplearn(problem, X, y, cfg, seed, budget, stop_nmse):
    if importlib.util.find_spec("gplearn") is None:
        raise Skipped("gplearn is not installed (pip install gplearn)")
    import warnings

    from gplearn.genetic import SymbolicRegressor

    # its worker processes inherit this: protected operators overflow on purpose
    os.environ.setdefault("PYTHONWARNINGS", "ignore::RuntimeWarning")
    stop = 0.0 if stop_nmse is None else stop_nmse * float(np.var(y))
    model = SymbolicRegressor(function_set=_gplearn_functions(cfg), metric="mse", generations=1,
                              stopping_criteria=stop, random_state=seed, warm_start=True,
                              n_jobs=int(cfg.get("threads", 1)), parsimony_coefficient=0.001)
    t0 = time.perf_counter()
    gens = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # one generation at a time (warm start) until the budget is spent or it stops
        while True:
            gens += 1
            model.set_params(generations=gens)
            model.fit(X, y)
            best = min(model.run_details_["best_fitness"])
            if time.perf_counter() - t0 >= budget or best <= stop:
                break
    expr = _gplearn_sympy(str(model._program), problem.symbols())
    return expr, {"evals": gens * model.population_size}


RUNNERS = {"symjax_sr": _run_symjax, "pyoperon": _run_pyoperon, "gplearn": _run_gplearn}


# --------------------------------------------------------------------------------- rows


def run_one(method: str, problem, seed: int, cfg: dict) -> dict:
    """One method on one problem and seed: the CSV row (and the front, for plots)."""
    budget = float(cfg["budget"])
    X, y = problem.sample(seed=seed)
    X_test, y_test = problem.sample(int(cfg.get("test_rows", 1000)),
                                    seed=seed + int(cfg.get("test_seed_offset", 10_000)))
    if problem.noise:  # the test rows are noiseless
        y_test = problem.evaluate(X_test)
    row = {"method": method, "suite": problem.suite, "problem": problem.name, "seed": seed,
           "budget_s": budget, "truth": problem.formula}
    stop_nmse = None if problem.noise else NUMERIC_NMSE
    t0 = time.perf_counter()
    try:
        expr, extra = RUNNERS[method](problem, X, y, cfg, seed, budget, stop_nmse)
    except Skipped as e:
        return dict(row, status="skipped", note=str(e))
    except Exception as e:  # noqa: BLE001 - a failing method is a row, not a crashed benchmark
        return dict(row, status="error", note=f"{type(e).__name__}: {e}"[:300])
    wall = time.perf_counter() - t0
    rounded = round_significant(expr)
    r2, nmse = scores(y_test, _evaluate(expr, problem.symbols(), X_test))
    numeric = (r2 > NOISY_R2) if problem.noise else (nmse < NUMERIC_NMSE)
    points = dict(zip(problem.symbols(), X_test[:64].T, strict=True))
    row.update(
        status="ok", test_r2=r2, test_nmse=nmse, recovered_numeric=bool(numeric),
        symbolic=bool(symbolic_match(expr, problem.truth(), points, problem.domain())),
        size=model_size(rounded),
        equation=str(rounded), wall_s=round(wall, 3),
        compile_s=None if extra.get("compile_s") is None else round(extra["compile_s"], 3),
        time_to_solution_s=round(wall, 3) if numeric else None, evals=extra.get("evals"), note="",
    )
    row["_front"] = extra.get("front")
    return row


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _key(row) -> tuple:
    return (row["method"], row["problem"], int(row["seed"]), float(row["budget_s"]))


def _append(path: Path, row: dict) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
        f.flush()
        os.fsync(f.fileno())


def _plot_front(row: dict, directory: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None or not row.get("_front"):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c, loss = zip(*row["_front"], strict=True)
    directory.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.step(c, np.maximum(loss, 1e-30), where="post", marker="o")
    ax.set_yscale("log")
    ax.set_xlabel("complexity")
    ax.set_ylabel("loss")
    ax.set_title(f"{row['problem']} (seed {row['seed']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(directory / f"{row['problem']}-seed{row['seed']}.png", dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------ summary


def _truthy(v) -> bool:
    return v is True or str(v) == "True"


def _median(values) -> str:
    v = [float(x) for x in values if x not in (None, "") and math.isfinite(float(x))]
    return f"{np.median(v):.4g}" if v else "n/a"


def summary(rows: list[dict]) -> str:
    """Markdown: per suite and method, symbolic and numeric counts, median R^2, size, time."""
    lines = ["| suite | method | symbolic | numeric | median test R² | median size "
             "| median size (symbolic) | median time to solution (s) | skipped/errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    suites = list(dict.fromkeys(r["suite"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    for suite in suites:
        for m in methods:
            rs = [r for r in rows if r["suite"] == suite and r["method"] == m]
            ok = [r for r in rs if r["status"] == "ok"]
            bad = len(rs) - len(ok)
            sym = [r for r in ok if _truthy(r["symbolic"])]
            num = [r for r in ok if _truthy(r["recovered_numeric"])]
            lines.append(
                f"| {suite} | {m} | {len(sym)}/{len(rs)} | {len(num)}/{len(rs)} "
                f"| {_median(r['test_r2'] for r in ok)} | {_median(r['size'] for r in ok)} "
                f"| {_median(r['size'] for r in sym)} "
                f"| {_median(r['time_to_solution_s'] for r in num)} | {bad} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from ._problems import load_problems

    cfg = load_settings(args)
    problems = load_problems(args.problems)
    if cfg.get("problems"):
        unknown = [n for n in cfg["problems"] if n not in problems]
        if unknown:
            raise SystemExit(f"Unknown problems {unknown}; known: {', '.join(problems)}")
        chosen = [problems[n] for n in cfg["problems"]]
    else:
        suites = {p.suite for p in problems.values()}
        bad = [s for s in cfg["suites"] if s not in suites]
        if bad:
            raise SystemExit(f"Unknown --suites {bad}; the problems file has {sorted(suites)}.")
        chosen = [p for s in cfg["suites"] for p in problems.values() if p.suite == s]
    methods = ["symjax_sr"] + list(cfg["peers"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {_key(r) for r in _read_rows(out) if r["status"] != "error"}  # errors are retried
    fronts = out.with_name(out.stem + "_fronts")
    print(f"recovery: {len(chosen)} problems x {len(cfg['seeds'])} seeds x {methods}, budget "
          f"{cfg['budget']:g} s, operators {cfg['binary_operators'] + cfg['unary_operators']}, "
          f"settings {cfg['config_path']}; rows -> {out}", file=sys.stderr)
    for problem in chosen:
        for seed in cfg["seeds"]:
            for method in methods:
                if (method, problem.name, int(seed), float(cfg["budget"])) in done:
                    continue
                row = run_one(method, problem, int(seed), cfg)
                _append(out, row)
                if method == "symjax_sr":
                    _plot_front(row, fronts)
                public = {k: row.get(k) for k in COLUMNS}
                if args.json:
                    print(json.dumps(public, default=str))
                else:
                    print(f"{method:>9} {problem.name:<22} seed {seed} {row['status']:<7} "
                          f"sym {row.get('symbolic')!s:<5} num {row.get('recovered_numeric')!s:<5} "
                          f"R2 {row.get('test_r2', float('nan')):.6g} size {row.get('size')} "
                          f"wall {row.get('wall_s')} s  {row.get('equation') or row.get('note')}",
                          file=sys.stderr)
    latest = {_key(r): r for r in _read_rows(out)}  # one row per key, the last written
    rows = [r for r in latest.values() if float(r["budget_s"]) == float(cfg["budget"])
            and r["problem"] in {p.name for p in chosen}]
    table = summary(rows)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0

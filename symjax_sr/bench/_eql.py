"""EQL on the function set of Kim et al. (2020), each fitted `--trials` times.

Per function: 256 training points on `U(-1, 1)`, an extrapolation test set of 1000
points on `U(-2, 2)`; one `EQLRegressor` fit per trial (a different seed each). A trial
succeeds when the chosen formula, rounded to 2 decimals, is symbolically equal to the
truth rounded the same way (`successes_symbolic`), or when its R² on the extrapolation
set exceeds 0.999 (`successes_r2`); `successes` counts either. `median_seconds` is the
median wall time of one fit (training and extraction; the first fit also compiles).

Networks have 2 hidden layers (3 for `(x+yz)^3`) of Kim et al.'s units (constant,
identity, square, sin, exp, sigmoid, 2 products) and the smoothed L0.5 regulariser.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np
import sympy

from ..eql import EQLRegressor, round_floats

_x, _y, _z = sympy.symbols("x y z")
_PI = np.pi


def _sig(v):
    return 1 / (1 + np.exp(-v))


#: name -> (number of variables, NumPy function of columns, SymPy truth, hidden layers)
FUNCTIONS = {
    "x": (1, lambda x: x, _x, 2),
    "x^2": (1, lambda x: x**2, _x**2, 2),
    "x^3": (1, lambda x: x**3, _x**3, 2),
    "sin(2pi x)": (1, lambda x: np.sin(2 * _PI * x), sympy.sin(2 * sympy.pi * _x), 2),
    "exp(x)": (1, np.exp, sympy.exp(_x), 2),
    "xy": (2, lambda x, y: x * y, _x * _y, 2),
    "sin(2pi x)+sin(4pi y)": (2, lambda x, y: np.sin(2 * _PI * x) + np.sin(4 * _PI * y),
                              sympy.sin(2 * sympy.pi * _x) + sympy.sin(4 * sympy.pi * _y), 2),
    "0.5xy+0.5z": (3, lambda x, y, z: 0.5 * x * y + 0.5 * z, _x * _y / 2 + _z / 2, 2),
    "x^2+y-2z": (3, lambda x, y, z: x**2 + y - 2 * z, _x**2 + _y - 2 * _z, 2),
    "exp(-x^2)": (1, lambda x: np.exp(-(x**2)), sympy.exp(-(_x**2)), 2),
    "sigmoid(10x)": (1, lambda x: _sig(10 * x), 1 / (1 + sympy.exp(-10 * _x)), 2),
    "x^2+sin(2pi y)": (2, lambda x, y: x**2 + np.sin(2 * _PI * y),
                       _x**2 + sympy.sin(2 * sympy.pi * _y), 2),
    "(x+yz)^3": (3, lambda x, y, z: (x + y * z) ** 3, (_x + _y * _z) ** 3, 3),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=20, help="fits per function")
    parser.add_argument("--functions", default=None,
                        help="comma-separated subset of: " + ", ".join(FUNCTIONS))
    parser.add_argument("--steps", type=int, nargs=3, default=[2000, 10000, 2000],
                        metavar=("WARMUP", "REGULARISED", "FINETUNE"), help="phase lengths")
    parser.add_argument("--strength", type=float, default=1e-3, help="L0.5 strength λ")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="3 trials and half the steps: a smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON lines only")


def equivalent(expr, truth, digits: int = 2) -> bool:
    """Whether `expr` and `truth` agree symbolically once floats are rounded to `digits`."""
    a = round_floats(sympy.sympify(expr), digits)
    truth = sympy.sympify(truth)
    b = round_floats(truth.xreplace({sympy.pi: sympy.Float(sympy.pi.evalf())}).evalf(), digits)
    diff = sympy.expand(a - b)
    if diff == 0:
        return True
    if sympy.count_ops(diff) > 40:  # simplify is slow on big expressions, and they differ
        return False
    return sympy.simplify(diff) == 0


def _r2(pred, y) -> float:
    pred = np.asarray(pred, dtype=np.float64)
    if not np.all(np.isfinite(pred)):
        return -np.inf
    return 1.0 - float(np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2))


def run_function(name: str, trials: int, steps, strength: float, seed: int) -> dict:
    n_vars, fn, truth, layers = FUNCTIONS[name]
    rng = np.random.default_rng(seed)
    names = ["x", "y", "z"][:n_vars]
    X = rng.uniform(-1, 1, (256, n_vars))
    Xt = rng.uniform(-2, 2, (1000, n_vars))
    y, yt = fn(*X.T), fn(*Xt.T)
    seconds, sym, r2s, formulas = [], [], [], []
    for t in range(trials):
        model = EQLRegressor(hidden_layers=layers, regularisation_strength=strength,
                             warmup_steps=steps[0], regularised_steps=steps[1],
                             finetune_steps=steps[2], random_state=seed * 1000 + t)
        t0 = time.perf_counter()
        model.fit(X, y, variable_names=names)
        expr = model.sympy()
        seconds.append(time.perf_counter() - t0)
        with np.errstate(all="ignore"):
            r2s.append(_r2(model.predict(Xt), yt))
        sym.append(equivalent(expr, truth))
        formulas.append(str(expr))
    ok_sym, ok_r2 = np.array(sym), np.array(r2s) > 0.999
    best = int(np.argmax(r2s))
    return {
        "function": name,
        "trials": trials,
        "successes": int(np.sum(ok_sym | ok_r2)),
        "successes_symbolic": int(np.sum(ok_sym)),
        "successes_r2": int(np.sum(ok_r2)),
        "median_seconds": round(float(np.median(seconds)), 3),
        "median_test_r2": round(float(np.median(r2s)), 4),
        "hidden_layers": layers,
        "steps": list(steps),
        "example": formulas[best],
    }


def main(args: argparse.Namespace) -> int:
    trials, steps = args.trials, list(args.steps)
    if args.quick:
        trials = min(trials, 3)
        steps = [max(s // 2, 1) for s in steps]
    if trials < 1:
        print(f"--trials must be >= 1, got {trials}", file=sys.stderr)
        return 2
    names = list(FUNCTIONS) if args.functions is None else [
        f.strip() for f in args.functions.split(",") if f.strip()]
    bad = [n for n in names if n not in FUNCTIONS]
    if bad:
        print(f"unknown function(s) {bad}; valid: {', '.join(FUNCTIONS)}", file=sys.stderr)
        return 2
    if not args.json:
        print(f"{'function':>22} {'succ':>5} {'symb':>5} {'r2':>5} {'trials':>6} "
              f"{'med s':>7} {'med R2':>8}  example")
    total = 0
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            row = run_function(name, trials, steps, args.strength, args.seed)
        total += row["successes"]
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{name:>22} {row['successes']:>5} {row['successes_symbolic']:>5} "
                  f"{row['successes_r2']:>5} {trials:>6} {row['median_seconds']:>7} "
                  f"{row['median_test_r2']:>8}  {row['example']}", flush=True)
    if not args.json:
        print(f"total successes {total}/{trials * len(names)}; steps {steps}, "
              f"λ={args.strength}, success = symbolic after rounding to 2 decimals or "
              "extrapolation R² > 0.999")
    return 0

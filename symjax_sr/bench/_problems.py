"""Public benchmark problems: loading, sampling, and SRBench's symbolic-solution check.

API:

- `find_problems_file(path=None) -> Path`: `path`, else `$SYMJAX_SR_PROBLEMS`, else the
  first `shared/benchmarks/problems.json` found walking up from the working directory
  (then from this file).
- `load_problems(path=None) -> dict[str, Problem]`: every problem of every suite, by name.
- `Problem.sample(n, seed) -> (X [n, F] float64, y [n])`: uniform inputs in the stated
  ranges, `y` from the SymPy truth plus relative Gaussian noise, as SRBench adds it
  (standard deviation `noise * rms(y)`).
- `Problem.truth() -> sympy.Expr` over plain symbols named like the variables.
- `symbolically_equivalent(model, truth, digits=3, points=None, timeout=10.0, domain=None)
  -> bool`: SRBench's "symbolic solution": after rounding the model's constants, `truth -
  model` or `model / truth` simplifies to a constant (on the problem's `domain` when given). `points` (`{symbol: values}`) skips
  SymPy when neither is numerically constant there; `timeout` bounds each `simplify`
  (main thread only; a timeout counts as not equivalent).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import sympy

__all__ = [
    "Problem",
    "find_problems_file",
    "load_problems",
    "symbolically_equivalent",
    "round_constants",
]

_RELATIVE = Path("shared") / "benchmarks" / "problems.json"
ENV_VAR = "SYMJAX_SR_PROBLEMS"


def find_problems_file(path: str | os.PathLike | None = None) -> Path:
    """Locate `problems.json` (see the module docstring for the search order)."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"`--problems` file {str(p)!r} does not exist.")
        return p
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env)
        if not p.is_file():
            raise FileNotFoundError(f"${ENV_VAR} points to {env!r}, which does not exist.")
        return p
    for base in (Path.cwd(), Path(__file__).resolve().parent):
        for d in (base, *base.parents):
            if (d / _RELATIVE).is_file():
                return d / _RELATIVE
    raise FileNotFoundError(
        f"Could not find {_RELATIVE} above {Path.cwd()}; pass `--problems FILE` or set "
        f"${ENV_VAR}."
    )


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    suite: str
    formula: str
    variables: tuple[tuple[str, float, float], ...]
    n: int
    noise: float = 0.0

    @property
    def variable_names(self) -> tuple[str, ...]:
        return tuple(v for v, _, _ in self.variables)

    def symbols(self) -> tuple[sympy.Symbol, ...]:
        return tuple(sympy.Symbol(v) for v in self.variable_names)

    def domain(self) -> dict[str, tuple[float, float]]:
        """The sampling range of each variable, by name."""
        return {v: (lo, hi) for v, lo, hi in self.variables}

    def truth(self) -> sympy.Expr:
        """The formula over plain symbols (so `gamma`, `I1`, `E` are variables, not SymPy's)."""
        local = dict(zip(self.variable_names, self.symbols(), strict=True))
        return sympy.sympify(self.formula, locals=local)

    def evaluate(self, X: np.ndarray) -> np.ndarray:
        f = sympy.lambdify(self.symbols(), self.truth(), "numpy")
        with np.errstate(all="ignore"):
            return np.asarray(f(*X.T), dtype=np.float64) * np.ones(X.shape[0])

    def sample(self, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        n = self.n if n is None else n
        rng = np.random.default_rng(seed)
        lo = np.array([v[1] for v in self.variables], np.float64)
        hi = np.array([v[2] for v in self.variables], np.float64)
        X = rng.uniform(lo, hi, (n, len(self.variables)))
        y = self.evaluate(X)
        if self.noise:
            y = y + rng.normal(0.0, self.noise * np.sqrt(np.mean(y**2)), n)
        return X, y


def load_problems(path: str | os.PathLike | None = None) -> dict[str, Problem]:
    data = json.loads(find_problems_file(path).read_text())
    out = {}
    for suite, problems in data["suites"].items():
        for p in problems:
            out[p["name"]] = Problem(
                name=p["name"], suite=suite, formula=p["formula"],
                variables=tuple((k, float(lo), float(hi)) for k, (lo, hi) in p["variables"].items()),
                n=int(p["n"]), noise=float(p.get("noise", 0.0)),
            )
    return out


def round_constants(expr: sympy.Expr, digits: int = 3, rational: bool = False) -> sympy.Expr:
    """SRBench's `round_floats`: floats below 1e-4 in magnitude become 0, others are
    rounded to `digits` decimals; with `rational`, kept as exact rationals (so that
    `log(x + 1.0)` and `log(x + 1)` cancel)."""
    repl = {}
    for a in expr.atoms(sympy.Float):
        r = 0.0 if abs(a) < 1e-4 else round(float(a), digits)
        repl[a] = sympy.Rational(repr(r)) if rational else sympy.Float(r)
    return expr.xreplace(repl)


def _is_constant(expr: sympy.Expr) -> bool:
    if expr.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        return False
    if not expr.free_symbols:
        return True
    try:
        return bool(expr.is_constant(simplify=False))
    except (TypeError, ValueError, NotImplementedError, RecursionError):
        return False


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Timeout

    def unraisable(info):  # the swallowed alarm: repeated below, not worth a traceback
        if not isinstance(info.exc_value, _Timeout):
            hook(info)

    previous, hook = signal.signal(signal.SIGALRM, handler), sys.unraisablehook
    sys.unraisablehook = unraisable
    # re-fires every 0.5 s: an alarm that lands in a callback that swallows it (a garbage
    # collector callback, say) is repeated
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sys.unraisablehook = hook


def _numerically_constant(expr: sympy.Expr, points) -> bool | None:
    """Whether `expr` is constant on `points` (None when it cannot be evaluated there)."""
    syms = sorted(expr.free_symbols, key=str)
    if not syms:
        return True
    if any(s not in points for s in syms):
        return None
    try:
        f = sympy.lambdify(syms, expr, "numpy")
        with np.errstate(all="ignore"):
            v = np.asarray(f(*(np.asarray(points[s], np.float64) for s in syms)), np.complex128)
    except Exception:  # noqa: BLE001 - any failure to evaluate: let SymPy decide
        return None
    if not np.all(np.isfinite(v)) or np.any(np.abs(v.imag) > 1e-12 * (1 + np.abs(v.real))):
        return None
    v = v.real.reshape(-1)
    # loose on purpose: the symbolic test rounds constants, which moves values slightly
    return bool(np.max(np.abs(v - v[0])) <= 0.05 * max(1.0, float(np.max(np.abs(v)))))


def _assumptions(name: str, domain) -> dict:
    low = (domain or {}).get(name, (-np.inf, np.inf))[0]
    return {"positive": True} if low > 0 else {"nonnegative": True} if low >= 0 else {"real": True}


def symbolically_equivalent(model: sympy.Expr, truth: sympy.Expr, digits: int = 3,
                            points=None, timeout: float | None = 10.0, domain=None) -> bool:
    """SRBench's symbolic-solution test (difference or ratio is a constant after rounding).

    The variables are read as real (every problem samples them from real ranges), so that
    identities of reals such as `log(exp(x)) = x` count; with `domain` (`{name: (low,
    high)}`, `Problem.domain()`), one sampled from a range with `low > 0` as positive
    (`low >= 0`: nonnegative), so that identities on the problem's domain such as
    `sqrt(a)*sqrt(b) = sqrt(a*b)` count too.
    """
    model, truth = sympy.sympify(model), sympy.sympify(truth)
    real = {s: sympy.Symbol(s.name, **_assumptions(s.name, domain))
            for s in model.free_symbols | truth.free_symbols}
    model, truth = model.xreplace(real), truth.xreplace(real)
    if points is not None:
        points = {real.get(k, k): v for k, v in points.items()}
    if model.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo) or round_constants(model, digits).is_zero:
        return False
    candidates = [truth - model, model / truth]
    if points is not None:
        # a candidate that is not constant on the points is not worth SymPy's time
        candidates = [c for c in candidates if _numerically_constant(c, points) is not False]
    for candidate in candidates:
        # SRBench: round, test; simplify, round, test. Then once more with the rounded
        # constants as rationals, which SymPy cancels exactly. All of it under the time
        # limit: even `is_constant` may call `simplify`.
        try:
            with _time_limit(timeout):
                expr = round_constants(candidate, digits)
                if _is_constant(expr):
                    return True
                expr = round_constants(sympy.simplify(expr), digits)
                if _is_constant(expr):
                    return True
                expr = sympy.simplify(round_constants(expr, digits, rational=True))
                if _is_constant(expr):
                    return True
        except (_Timeout, TypeError, ValueError, NotImplementedError, RecursionError):
            continue
    return False

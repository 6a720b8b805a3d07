"""Benchmark helpers: problem loading and sampling, SRBench's symbolic-solution check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sympy

from symjax_sr.bench._problems import (
    find_problems_file,
    load_problems,
    round_constants,
    symbolically_equivalent,
)
from symjax_sr.bench._search import r2_score

PROBLEMS = {
    "about": "test",
    "suites": {
        "s": [
            {"name": "p-gamma", "formula": "sqrt(gamma*pr/rho)",
             "variables": {"gamma": [1, 5], "pr": [1, 5], "rho": [2, 3]}, "n": 50},
            {"name": "p-noisy", "formula": "2*x", "variables": {"x": [-1, 1]}, "n": 4000,
             "noise": 0.1},
        ]
    },
}


@pytest.fixture
def problems_file(tmp_path):
    path = tmp_path / "problems.json"
    path.write_text(json.dumps(PROBLEMS))
    return path


def test_find_and_load(problems_file, monkeypatch, tmp_path):
    assert find_problems_file(problems_file) == problems_file
    monkeypatch.setenv("SYMJAX_SR_PROBLEMS", str(problems_file))
    assert find_problems_file() == problems_file
    monkeypatch.delenv("SYMJAX_SR_PROBLEMS")
    nested = tmp_path / "shared" / "benchmarks"
    nested.mkdir(parents=True)
    (nested / "problems.json").write_text(json.dumps(PROBLEMS))
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_problems_file().resolve() == (nested / "problems.json").resolve()
    with pytest.raises(FileNotFoundError, match="--problems"):
        find_problems_file(tmp_path / "missing.json")
    assert set(load_problems(problems_file)) == {"p-gamma", "p-noisy"}


def test_sampling_follows_ranges_truth_and_noise(problems_file):
    p = load_problems(problems_file)["p-gamma"]
    # `gamma` is a variable here, not SymPy's gamma function
    assert p.truth().free_symbols == set(p.symbols())
    X, y = p.sample(seed=3)
    assert X.shape == (50, 3)
    assert (X[:, 2] >= 2).all() and (X[:, 2] <= 3).all()
    np.testing.assert_allclose(y, np.sqrt(X[:, 0] * X[:, 1] / X[:, 2]))
    X2, _ = p.sample(seed=3)
    X3, _ = p.sample(seed=4)
    assert np.array_equal(X, X2) and not np.array_equal(X, X3)
    q = load_problems(problems_file)["p-noisy"]
    X, y = q.sample(seed=0)
    resid = y - 2 * X[:, 0]
    rms = np.sqrt(np.mean((2 * X[:, 0]) ** 2))
    assert np.std(resid) == pytest.approx(0.1 * rms, rel=0.1)


x, y = sympy.symbols("x y")


@pytest.mark.parametrize(
    "model, truth, expected",
    [
        (x * (x * (x + 1.0000002)) + x, x**3 + x**2 + x, True),
        (x * (x * x + 1.0000002), x**3 + x**2 + x, False),
        (sympy.Float(0.0795775) * x / y**2, x / (4 * sympy.pi * y**2), True),  # ratio constant
        (sympy.log(x + 1.0) + sympy.log(x * x + 0.99999), sympy.log(x + 1) + sympy.log(x**2 + 1), True),
        (2 * sympy.sin(x), sympy.sin(x) + sympy.sin(x + x**2), False),
        (x * y + 0.3, x * y, True),  # difference constant
        (sympy.sin(x) ** 2 + sympy.cos(x) ** 2 + x, x + 1, True),
        (sympy.Float(0.0), x, False),
        # constants that only round to the truth once multiplied out (SRBench simplifies first)
        (x + sympy.Float(1.013) * x**2 * (sympy.Float(0.987) + sympy.Float(0.987) * x),
         x**3 + x**2 + x, True),
        # identities of real variables count; sqrt(x**2) = |x| is not x
        (x * sympy.log(sympy.exp(x) ** y) / 2, y * x**2 / 2, True),
        (sympy.sqrt(x**2), x, False),
    ],
)
def test_symbolic_equivalence(model, truth, expected):
    assert symbolically_equivalent(model, truth) is expected


def test_symbolic_equivalence_on_the_problem_domain():
    """Variables sampled from positive ranges are read as positive: sqrt(a)*sqrt(b)/sqrt(c)
    is sqrt(a*b/c) and sqrt(x**2) is x there, not where a range reaches below 0."""
    a, b, c = sympy.symbols("a b c")
    model, truth = sympy.sqrt(a) * sympy.sqrt(b) / sympy.sqrt(c), sympy.sqrt(a * b / c)
    assert not symbolically_equivalent(model, truth)
    assert symbolically_equivalent(model, truth, domain={"a": (1, 5), "b": (1, 5), "c": (1, 5)})
    assert not symbolically_equivalent(model, truth, domain={"a": (-1, 5), "b": (-1, 5), "c": (1, 5)})
    assert symbolically_equivalent(sympy.sqrt(a**2), a, domain={"a": (0, 2)})
    assert not symbolically_equivalent(sympy.sqrt(a**2), a, domain={"a": (-1, 2)})
    problem = load_problems()["feynman-I.47.23"]
    assert problem.domain() == {"gamma": (1.0, 5.0), "pr": (1.0, 5.0), "rho": (1.0, 5.0)}


def test_round_constants():
    e = round_constants(sympy.Float(2.50004) * x + sympy.Float(3e-5))
    assert e == sympy.Float(2.5) * x
    assert round_constants(sympy.Float(2.50004) * x, rational=True) == sympy.Rational(5, 2) * x


def test_r2():
    yv = np.array([1.0, 2.0, 3.0])
    assert r2_score(yv, yv) == 1.0
    assert r2_score(yv, np.full(3, 2.0)) == 0.0
    assert r2_score(yv, np.array([1.0, np.nan, 3.0])) == -np.inf


def test_time_limit_repeats_a_swallowed_alarm_quietly(capsys):
    import time

    from symjax_sr.bench._problems import _time_limit, _Timeout

    class SlowFinaliser:
        def __del__(self):  # the alarm lands here, where Python can only report it
            end = time.perf_counter() + 0.3
            while time.perf_counter() < end:
                pass

    with pytest.raises(_Timeout):
        with _time_limit(0.05):
            obj = SlowFinaliser()
            del obj
            time.sleep(5)  # the repeated alarm interrupts this
    assert "Exception ignored" not in capsys.readouterr().err

"""`bench recovery`: metrics against hand-checked cases, peers, resumable CSV, summary."""

from __future__ import annotations

import argparse
import csv
import importlib.util

import numpy as np
import pytest
import sympy

from symjax_sr.bench import _recovery as rec
from symjax_sr.bench._problems import load_problems

x, y = sympy.symbols("x y")


def test_round_significant_and_size():
    e = rec.round_significant(sympy.Float(3.14159265) * x + sympy.Float(2e-5))
    assert e == sympy.Rational("3.142") * x
    assert rec.model_size(x * y + 1) == 5  # Add(Mul(x, y), 1): Add, 1, Mul, x, y


def test_symbolic_match_is_scale_and_offset_invariant_but_not_loose():
    truth = x * y
    pts = {x: np.linspace(1, 5, 16), y: np.linspace(2, 3, 16)}
    assert rec.symbolic_match(sympy.Float(1.00001) * x * y + sympy.Float(0.5), truth, pts)
    assert not rec.symbolic_match(x * y + sympy.Float(0.01) * x, truth, pts)
    assert not rec.symbolic_match(x + y, truth, pts)


def test_scores():
    yy = np.array([1.0, 2.0, 3.0])
    assert rec.scores(yy, yy) == (1.0, 0.0)
    r2, nmse = rec.scores(yy, np.full(3, 2.0))
    assert r2 == pytest.approx(0.0) and nmse == pytest.approx(1.0)
    assert rec.scores(yy, np.array([1.0, np.nan, 3.0])) == (-np.inf, np.inf)


def test_gplearn_program_reads_protected_operators():
    e = rec._gplearn_sympy("add(mul(X0, X1), log(sqrt(X0)))", (x, y))
    assert sympy.simplify(e - (x * y + sympy.log(sympy.sqrt(sympy.Abs(x))))) == 0


def _args(tmp_path, **kw):
    ns = dict(config=None, suites=None, names=None, budget=None, seeds=None, peers=None,
              out=str(tmp_path / "rows.csv"), problems=None, quick=True, json=False)
    ns.update(kw)
    return argparse.Namespace(**ns)


def test_settings_flags_override_the_config(tmp_path):
    cfg = rec.load_settings(_args(tmp_path, budget=3.0, peers=["none"]))
    assert cfg["budget"] == 3.0 and cfg["peers"] == []
    assert cfg["problems"] == ["feynman-I.12.1", "feynman-I.25.13", "feynman-I.14.4"]
    with pytest.raises(SystemExit, match="Unknown --peers"):
        rec.load_settings(_args(tmp_path, peers=["eureqa"]))
    full = rec.load_settings(_args(tmp_path, quick=False))
    assert full["suites"] == ["nguyen", "feynman", "odefield", "noisy"] and full["seeds"] == [0, 1]


def test_a_missing_peer_is_a_skipped_row(tmp_path, monkeypatch):
    problem = load_problems()["feynman-I.12.1"]
    cfg = rec.load_settings(_args(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gplearn" else real(name, *a))
    row = rec.run_one("gplearn", problem, 0, cfg)
    assert row["status"] == "skipped" and "pip install gplearn" in row["note"]


def test_quick_run_writes_rows_resumes_and_summarises(tmp_path, capsys):
    """The CI form: the quick problems at a small budget, symjax_sr only."""
    args = _args(tmp_path, peers=["none"], budget=4.0, names=["feynman-I.12.1", "feynman-I.25.13"])
    assert rec.main(args) == 0
    with open(tmp_path / "rows.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["problem"]) for r in rows] == [
        ("symjax_sr", "feynman-I.12.1"), ("symjax_sr", "feynman-I.25.13")]
    for r in rows:
        assert r["status"] == "ok", r["note"]
        assert float(r["compile_s"]) > 0 and float(r["wall_s"]) >= float(r["compile_s"])
        # the reported equation is re-scored here, independently of the benchmark
        expr = sympy.sympify(r["equation"])
        problem = load_problems()[r["problem"]]
        Xt, yt = problem.sample(1000, seed=10_000)
        pred = sympy.lambdify(problem.symbols(), expr, "numpy")(*Xt.T) * np.ones(len(yt))
        r2 = 1 - np.mean((yt - pred) ** 2) / np.var(yt)
        assert float(r["test_r2"]) == pytest.approx(r2, rel=1e-6, abs=1e-9)
    table = capsys.readouterr().out
    assert "| feynman | symjax_sr |" in table
    assert (tmp_path / "rows.md").read_text().strip() == table.strip()
    # rerun: every row is already there, nothing is recomputed or duplicated
    assert rec.main(args) == 0
    with open(tmp_path / "rows.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2

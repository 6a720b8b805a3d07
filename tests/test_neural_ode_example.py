"""`examples/neural_ode_distillation.py --quick`: the whole workflow (train a neural ODE,
distill its field, choose by trajectories, fine-tune through the solver, quantise)
recovers the structure of the true vector field."""

import importlib.util
import pathlib
import sys

import pytest
import sympy

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "neural_ode_distillation.py"


@pytest.fixture(scope="module")
def ex():
    """The example, imported once for the module."""
    spec = importlib.util.spec_from_file_location("neural_ode_distillation", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses (equinox modules) look themselves up
    spec.loader.exec_module(module)
    return module


def test_structure_helper_reads_the_true_form_only(ex):
    x0, x1 = sympy.symbols("x0 x1")
    a, b = ex.structure(sympy.sympify("1.02*x1/(x1 + 0.97)"), x1, 1)
    assert abs(a - 1.02) < 1e-12 and abs(b - 0.97) < 1e-12
    assert ex.structure(sympy.sympify("-x0/(x0 + 1)"), x0, -1) == (1.0, 1.0)
    assert ex.structure(sympy.sympify("x1/(x1 + 1) - 0.04*x1**2"), x1, 1) is None
    assert ex.structure(sympy.sympify("-0.57*x0"), x0, -1) is None


def test_refit_recovers_constants_the_search_left_unfitted(ex):
    import numpy as np

    X = np.random.default_rng(0).uniform(-0.5, 1.0, size=(200, 2))
    target = -X[:, 0] / (X[:, 0] + 1.0)
    expr, loss = ex.refit(ex.canonical(sympy.sympify("x0/(-0.248 + (-0.677 - x0))")), X, target)
    assert loss < 1e-20
    assert ex.structure(expr, sympy.Symbol("x0"), -1) == pytest.approx((1.0, 1.0))


def test_refit_keeps_a_formula_without_constants(ex):
    import numpy as np

    X = np.random.default_rng(1).uniform(0.0, 1.0, size=(50, 2))
    expr, loss = ex.refit(sympy.sympify("x1/(x1 + 1)"), X, X[:, 1] / (X[:, 1] + 1) + 0.1)
    assert expr == sympy.sympify("x1/(x1 + 1)") and loss == pytest.approx(0.01)


def test_quick_run_recovers_the_structure(ex, capsys):
    assert ex.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "structure: a*x1/(x1+b), -a*x0/(x0+b)" in out
    assert "check (constants within 0.1 of 1): PASS" in out

"""`early_stop_condition` as PySR's Julia string: parsed, checked and equal to the same rule in Python."""

import itertools
import math
import pickle

import pytest

from symjax_sr import PySRRegressor
from symjax_sr._stopping import JuliaStopCondition, stop_condition

# each Julia string next to the same rule written by hand in Python
CASES = [
    ("stop_if(loss, complexity) = loss < 1e-6 && complexity < 10",
     lambda loss, c: loss < 1e-6 and c < 10),
    ("f(loss, complexity) = (loss < 0.1) && (complexity < 10)",
     lambda loss, c: loss < 0.1 and c < 10),
    ("(l, c) -> l < 1f-3 || c == 1", lambda loss, c: loss < 1e-3 or c == 1),
    ("function my_stop(loss, complexity)\n    loss <= 0.5 * complexity^-2\nend",
     lambda loss, c: loss <= 0.5 * c ** -2),
    ("f(loss, complexity) = !(loss > 1) && log10(loss) + complexity < 3 && complexity != 4",
     lambda loss, c: not loss > 1 and math.log10(loss) + c < 3 and c != 4),
    ("g(a, b) = min(a, 2) * b >= abs(-3) || sqrt(b) > exp(1)",
     lambda loss, c: min(loss, 2) * c >= 3 or math.sqrt(c) > math.e),
]


@pytest.mark.parametrize("source,reference", CASES)
def test_julia_string_equals_python_rule(source, reference):
    cond = stop_condition(source)
    assert isinstance(cond, JuliaStopCondition)
    for loss, complexity in itertools.product([1e-9, 1e-6, 5e-4, 0.05, 0.2, 0.9, 1.0, 7.0],
                                              range(1, 16)):
        assert cond(loss, complexity) == reference(loss, complexity), (source, loss, complexity)


def test_pickles_and_other_forms_pass_through():
    cond = stop_condition(CASES[0][0])
    again = pickle.loads(pickle.dumps(cond))
    assert again == cond and again(1e-7, 3) and not again(1e-7, 11)
    assert stop_condition(None) is None
    assert stop_condition(1e-6) == 1e-6 and isinstance(stop_condition(1), float)

    def f(loss, complexity):
        return loss < 1

    assert stop_condition(f) is f


@pytest.mark.parametrize("source,message", [
    ("loss < 1e-6", "not a function of (loss, complexity)"),
    ("f(loss) = loss < 1", "not a function of (loss, complexity)"),
    ("f(l, l) = l < 1", "names both arguments"),
    ("f(loss, complexity) = loss < tol", "the name 'tol'"),
    ("f(loss, complexity) = loss.real < 1", "Attribute"),
    ("f(loss, complexity) = open(loss)", "a call other than"),
    ("f(loss, complexity) = loss < 'a'", "the constant 'a'"),
    ("f(loss, complexity) = (lambda: 1)()", "a call other than"),
    ("f(loss, complexity) = loss <", "cannot read"),
])
def test_bad_strings_are_refused_with_the_fix(source, message):
    with pytest.raises(ValueError, match="early_stop_condition") as e:
        stop_condition(source)
    assert message in str(e.value)


def test_bad_types_are_refused():
    with pytest.raises(TypeError, match="loss threshold"):
        stop_condition(True)
    with pytest.raises(TypeError, match="loss threshold"):
        stop_condition([1e-6])
    with pytest.raises(ValueError, match="NaN"):
        stop_condition(float("nan"))


def test_regressor_refuses_a_bad_string_before_searching():
    import numpy as np

    X = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    model = PySRRegressor(early_stop_condition="stop_if(loss, complexity) = loss < eps",
                          niterations=1, verbosity=0, progress=False, temp_equation_file=True)
    with pytest.raises(ValueError, match="the name 'eps'"):
        model.fit(X, X[:, 0])

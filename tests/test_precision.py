"""`precision=64`: the whole search runs in float64 (kernels, constants, the optimiser),
so a formula's constants are fitted far below float32's resolution."""

from __future__ import annotations

import numpy as np

from symjax_sr import PySRRegressor


def test_precision_64_fits_in_float64():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (60, 2))
    y = 1.234567891234 * X[:, 0] + X[:, 1]
    m = PySRRegressor(binary_operators=["+", "-", "*"], niterations=20, populations=4,
                      population_size=20, ncycles_per_iteration=50, maxsize=10, precision=64,
                      random_state=0, deterministic=True, temp_equation_file=True, verbosity=0,
                      progress=False, early_stop_condition=1e-20)
    m.fit(X, y)
    assert m.search_states_[0].pop.const.dtype == np.float64
    best = m.equations_.iloc[-1]
    # float32 data and constants stop near 1e-14 relative; float64 goes to ~1e-30
    assert best["loss"] < 1e-20, m
    pred = m.predict(X, index=len(m.equations_) - 1)
    assert pred.dtype == np.float64
    np.testing.assert_allclose(pred, y, rtol=0, atol=1e-9)

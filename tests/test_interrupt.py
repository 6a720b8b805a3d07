"""Ctrl-C during `fit` stops after the current iteration and leaves a fitted model and files."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from symjax_sr import PySRRegressor

    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (60, 2)).astype(np.float32)
    y = X[:, 0] * X[:, 0] + np.cos(X[:, 1])
    model = PySRRegressor(binary_operators=["+", "*"], unary_operators=["cos"], populations=2,
                          population_size=16, ncycles_per_iteration=10, maxsize=10,
                          niterations=100000, verbosity=0, random_state=0,
                          output_directory=sys.argv[1], run_id="run", evaluator="reference")
    model.fit(X, y)
    print("STOPPED", model.fit_info_[0]["stopped_because"], model.fit_info_[0]["iterations"])
    print("PRED", float(model.predict(X)[0]))
    """
)


def test_sigint_stops_after_the_iteration(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    hof = tmp_path / "run" / "hall_of_fame.csv"
    deadline = time.time() + 300
    while not hof.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert hof.exists(), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    stopped = [line for line in out.splitlines() if line.startswith("STOPPED")]
    assert stopped and stopped[0].split()[1] == "interrupted"
    assert int(stopped[0].split()[2]) >= 1
    assert any(line.startswith("PRED") for line in out.splitlines())
    table = pd.read_csv(hof)
    assert list(table.columns) == ["Complexity", "Loss", "Equation"] and len(table) >= 1

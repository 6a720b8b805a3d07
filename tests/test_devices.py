"""Islands over devices: the same search on 1 and 2 devices, options, bad requests.

This test process has one CPU device (JAX started before these tests ran), so the
two-device runs happen in subprocesses started with two host devices; the two-process
run uses JAX's distributed runtime over localhost (examples/multihost.py).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from symjax_sr import PySRRegressor, use_host_devices
from symjax_sr._devices import island_mesh, prng_impl
from symjax_sr._params import PYSR_DEFAULTS, devices_of

ROOT = Path(__file__).resolve().parents[1]

# Runs in a subprocess with two CPU devices: every iteration's whole state of a search
# on one device against the same search split over two, for a reference-evaluator
# search of 4 islands (2 per device: batches of 8 expressions) and a mini-batched
# switch-evaluator one (batches of 128 of the 200 rows; with 64-row batches the constants
# fitted on one device and on two differ from the first iteration on, by up to 4% where a
# fit is flat and 1e-5 in loss, although the split of the fits over devices does not
# depend on the rows: most likely XLA:CPU kernels chosen by shape rounding apart, which
# the search amplifies); then `search_many` on 3 problems with devices=1 and devices=2
# (the problems split 2 + 1, padded with a copy of the last). The batched search also fits
# children's constants in the cycles (`optimize_newborn_every`): its cycles run in chunks,
# the plain search's in one scan.
_SAME_SEARCH = r"""
import json, sys
import jax, numpy as np
from symjax_sr import make_operator_set, search_many
from symjax_sr._constants import ConstantOptions
from symjax_sr._options import SearchOptions
from symjax_sr._run import run_search
assert jax.device_count() == 2, jax.devices()
rng = np.random.default_rng(0)
X = rng.uniform(-2, 2, (200, 2)); y = X[:, 0] ** 2 + np.sin(X[:, 1]) * X[:, 0]
ops = make_operator_set(("+", "-", "*", "/"), ("sin", "cos"))
out = {}
newborn = ConstantOptions.from_pysr(optimize_newborn_every=5, optimize_newborn_probability=0.5)
for name, extra, ev in [("reference", {}, "reference"),
                        ("batching", dict(batching=True, batch_size=128, annealing=True,
                                          constants=newborn), "switch")]:
    opts = SearchOptions(operators=ops, n_features=2, populations=4, population_size=24,
                         ncycles_per_iteration=20, maxsize=15, **extra)
    states, evals = {}, {}
    for d in (1, 2):
        states[d] = []
        r = run_search(X, y, opts, niterations=5, random_state=3, evaluator=ev, devices=d,
                       callback=lambda s, info, d=d: states[d].append(jax.device_get(s)))
        evals[d] = r.num_evals
    diffs = []
    for it, (a, b) in enumerate(zip(states[1], states[2])):
        for (path, u), v in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
            if jax.dtypes.issubdtype(u.dtype, jax.dtypes.prng_key):
                u, v = jax.random.key_data(u), jax.random.key_data(v)
            if not np.array_equal(np.asarray(u), np.asarray(v), equal_nan=True):
                diffs.append(f"iteration {it + 1} {jax.tree_util.keystr(path)}")
    out[name] = dict(iterations=[len(states[1]), len(states[2])], diffs=diffs,
                     evals=[evals[1], evals[2]])
Xb = rng.uniform(-2, 2, (3, 40, 2))
yb = np.stack([Xb[0, :, 0] * Xb[0, :, 1], np.cos(Xb[1, :, 0]) + Xb[1, :, 1], Xb[2, :, 0] ** 2])
many = {d: search_many(Xb, yb, random_state=0, devices=d, evaluator="reference",
                       binary_operators=["+", "-", "*"], unary_operators=["cos"],
                       populations=2, population_size=16, ncycles_per_iteration=10, maxsize=10,
                       niterations=3, should_optimize_constants=False) for d in (1, 2)}
out["many"] = dict(
    tables=[len(many[1].equations), len(many[2].equations)],
    equal=[t1[["complexity", "loss", "equation"]].values.tolist()
           == t2[["complexity", "loss", "equation"]].values.tolist()
           for t1, t2 in zip(many[1].equations, many[2].equations)],
    evals=[[r.num_evals for r in many[d].results] for d in (1, 2)])
print("RESULT " + json.dumps(out))
"""


def _python(code_or_args, env_extra, timeout=600):
    env = dict(os.environ, **env_extra)
    env.pop("XLA_FLAGS", None)
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)


def _result(proc, tag):
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(tag)]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(line[-1][len(tag):])


def test_one_and_two_devices_run_the_same_search():
    out = _result(_python(_SAME_SEARCH, {"JAX_NUM_CPU_DEVICES": "2"}), "RESULT ")
    for name in ("reference", "batching"):
        r = out[name]
        assert r["iterations"] == [5, 5]
        assert r["diffs"] == [], r["diffs"][:5]
        assert r["evals"][0] == r["evals"][1] > 0
    many = out["many"]
    assert many["tables"] == [3, 3]
    assert many["equal"] == [True, True, True]
    assert many["evals"][0] == many["evals"][1] and min(many["evals"][0]) > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_over_localhost_match_one_process_with_two_devices():
    example = str(ROOT / "examples" / "multihost.py")
    coord = f"localhost:{_free_port()}"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    procs = [subprocess.Popen([sys.executable, example, "--process-id", str(i),
                               "--num-processes", "2", "--coordinator", coord, "--niterations", "4"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    single = _python([example, "--single", "2", "--niterations", "4"], {"JAX_PLATFORMS": "cpu"})
    assert single.returncode == 0, single.stderr[-3000:]
    ref = json.loads(single.stdout.strip().splitlines()[-1])
    assert [o["process"] for o in outs] == [0, 1]
    assert all(o["devices"] == 2 for o in outs + [ref])
    assert outs[0]["hall_of_fame"] == outs[1]["hall_of_fame"] == ref["hall_of_fame"]
    assert len(ref["hall_of_fame"]) >= 5


def test_devices_of_maps_procs_and_parallelism():
    p = dict(PYSR_DEFAULTS)
    assert devices_of(p) is None
    assert devices_of(dict(p, procs=2)) == 2
    assert devices_of(dict(p, procs=0)) == 1  # PySR's "no workers": one device
    assert devices_of(dict(p, procs=1, parallelism="serial")) is None
    with pytest.raises(ValueError, match="parallelism='serial'"):
        devices_of(dict(p, procs=2, parallelism="serial"))
    with pytest.raises(ValueError, match="`parallelism` must be one of"):
        devices_of(dict(p, parallelism="threads"))
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="`procs` must be a non-negative int"):
            devices_of(dict(p, procs=bad))


def test_bad_device_requests_say_what_to_do():
    assert island_mesh(None, 15) is None
    assert island_mesh(1, 15) is None
    assert island_mesh(jax.devices()[:1], 15) is None
    with pytest.raises(ValueError, match=r"use_host_devices\(3\)"):
        island_mesh(3, 6)
    with pytest.raises(ValueError, match="at least 1"):
        island_mesh(0, 6)
    with pytest.raises(TypeError, match="not a bool"):
        island_mesh(True, 6)
    with pytest.raises(TypeError, match="JAX devices"):
        island_mesh(["cpu:0"], 6)
    with pytest.raises(ValueError, match="twice"):
        island_mesh([jax.devices()[0]] * 2, 6)
    # JAX has started here with one CPU device: more cannot be made now
    with pytest.raises(RuntimeError, match=r"before any JAX computation"):
        use_host_devices(len(jax.devices("cpu")) + 1)
    use_host_devices(1)  # what there is already: fine
    with pytest.raises(ValueError, match="positive int"):
        use_host_devices(0)


def test_islands_must_split_evenly(tmp_path):
    code = ("from symjax_sr._devices import island_mesh\n"
            "try:\n    island_mesh(2, 15)\nexcept ValueError as e:\n    print('RESULT ' + repr(str(e)))\n")
    proc = _python(code, {"JAX_NUM_CPU_DEVICES": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "populations=15 islands cannot be split evenly over 2 devices" in proc.stdout
    assert "e.g. 16" in proc.stdout


def test_regressor_refuses_procs_beyond_the_devices_before_searching():
    X = np.random.default_rng(0).normal(size=(30, 1))
    model = PySRRegressor(procs=len(jax.devices()) + 1, niterations=1, verbosity=0,
                          progress=False, temp_equation_file=True)
    with pytest.raises(ValueError, match="use_host_devices"):
        model.fit(X, X[:, 0])


def test_the_generator_follows_the_devices_option():
    assert prng_impl(None) == "rbg"
    assert prng_impl(1) == prng_impl(2) == "threefry2x32"


def test_bench_eval_splits_the_population_over_two_devices():
    proc = _python(["-m", "symjax_sr.bench", "eval", "--devices", "2", "--populations", "64",
                    "--rows", "32", "--json"], {})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {r["strategy"] for r in rows} == {"select", "switch", "auto"}
    for r in rows:
        assert r["devices"] == 2 and r["P"] == 64 and r["N"] == 32
        assert r["node_evals_per_s_per_device"] == pytest.approx(r["node_evals_per_s"] / 2)
        assert r["exprs_per_s_per_device"] == pytest.approx(r["exprs_per_s"] / 2)
        assert r["flags_agree"] == 1.0 and r["recompiles"] == 0
        assert r["median_rel_err"] < 1e-5
    bad = _python(["-m", "symjax_sr.bench", "eval", "--devices", "2", "--populations", "63",
                   "--rows", "32"], {})
    assert bad.returncode != 0 and "multiples of 2" in bad.stderr


_PROCS_SEARCH = """
import numpy as np
from symjax_sr import PySRRegressor
rng = np.random.default_rng(0)
X = rng.uniform(1, 5, (200, 3))
y = 1 / (1 / X[:, 0] + X[:, 1] / X[:, 2])
m = PySRRegressor(binary_operators=["+", "-", "*", "/"], unary_operators=["exp"], procs=2,
                  populations=24, maxsize=20, niterations=2, ncycles_per_iteration=20,
                  random_state=0, verbosity=0, progress=False, temp_equation_file=True)
m.fit(X, y)
print("RESULT", m.fit_info_[0]["iterations"])
"""


def test_procs_makes_its_host_devices_and_twelve_islands_per_device_finish():
    """`procs=2` on CPU (no JAX_NUM_CPU_DEVICES): the regressor makes the two host
    devices before anything starts JAX (choosing the evaluator did). With 12 islands per
    device the constant fitting's batched LAPACK Cholesky ran on every pool thread at
    once and the search hung (jaxlib 0.10); it runs in chunks now."""
    proc = _python(_PROCS_SEARCH, {}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT 2" in proc.stdout

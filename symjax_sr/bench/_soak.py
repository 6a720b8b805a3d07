"""`python -m symjax_sr.bench soak`: many fits in one process, a long run, and kills.

Three phases, each printed as one JSON line (with `--json`; a readable line otherwise):

- `many_fits`: `--fits` consecutive `PySRRegressor.fit` calls in this process, cycling
  through rows, features, operator sets and options (a fixed schedule), each fit one
  short iteration. Reports RSS and the number of memory maps at the start, the end and
  their maximum, and `compiles` (search programs compiled: similar fits share one).
- `long_run`: one search for `--minutes`; RSS is sampled every second, `rss_start_mb`
  is its value once the first iteration has written `hall_of_fame.csv`. Reports
  `nan_members` (members of the final populations whose loss or constants are NaN),
  how often `hall_of_fame.csv` and `checkpoint.pkl` were rewritten.
- `kills`: `--kills` child processes each run a search and get SIGKILL at a random
  moment after their first file write (seeded); after each, `hall_of_fame.csv` must
  parse, `from_file` must load, and, when a checkpoint exists, `warm_start=True` must
  resume with every complexity's loss at least as good as the checkpoint held.
  `files_ok` is the fraction of kills after which all of that held.

`--minutes 5 --fits 30 --kills 5` is the quick form.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROWS = (20, 50, 100, 200, 400, 1000)
FEATURES = (1, 2, 3, 5, 8, 12)
OPERATORS = ((["+", "*"], []), (["+", "-", "*", "/"], ["cos", "exp"]))
MAXSIZE = (10, 14)
#: The search of the long run and of the killed children (one program serves both, and the
#: warm starts after the kills).
LONG = dict(populations=4, population_size=20, ncycles_per_iteration=20, maxsize=12,
            binary_operators=["+", "-", "*", "/"], unary_operators=["cos", "exp"],
            temp_equation_file=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=60.0, help="long-run length (default 60)")
    parser.add_argument("--fits", type=int, default=200, help="fits in one process (default 200)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLed runs (default 20)")
    parser.add_argument("--phases", nargs="+", default=["many_fits", "long_run", "kills"],
                        choices=["many_fits", "long_run", "kills"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON line per phase")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def _tiny(**kw):
    from symjax_sr import PySRRegressor

    base = dict(niterations=1, populations=2, population_size=16, ncycles_per_iteration=5,
                tournament_selection_n=5, maxsize=10, random_state=0, deterministic=True,
                verbosity=0, progress=False, temp_equation_file=True, evaluator="switch")
    base.update(kw)
    return PySRRegressor(**base)


def _data(rows: int, features: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (rows, features))
    y = X[:, 0] ** 2 + np.cos(X[:, -1])
    return X, y


def schedule(i: int) -> dict:
    """Fit `i` of the many-fits phase: rows, features, operators and `maxsize` vary."""
    (binary, unary) = OPERATORS[i % 2]
    return dict(rows=ROWS[i % len(ROWS)], features=FEATURES[(i // len(ROWS)) % len(FEATURES)],
                binary_operators=binary, unary_operators=unary, maxsize=MAXSIZE[(i // 3) % 2])


def many_fits(n: int, seed: int, plan=schedule) -> dict:
    from symjax_sr._run import compile_count

    t0 = time.perf_counter()
    c0, r0, m0 = compile_count(), rss_mb(), maps()
    r_max, m_max = r0, m0
    for i in range(n):
        opts = dict(plan(i))
        X, y = _data(opts.pop("rows"), opts.pop("features"), seed + i)
        _tiny(**opts).fit(X, y)
        r_max, m_max = max(r_max, rss_mb()), max(m_max, maps())
    return {"phase": "many_fits", "fits": n, "rss_start_mb": round(r0, 1),
            "rss_end_mb": round(rss_mb(), 1), "rss_max_mb": round(r_max, 1), "maps_start": m0,
            "maps_end": maps(), "maps_max": m_max, "compiles": compile_count() - c0,
            "nan_members": 0, "files_ok": None, "seconds": round(time.perf_counter() - t0, 1)}


def _nan_members(model) -> int:
    n = 0
    for state in model.search_states_:
        loss = np.asarray(state.loss)
        const = np.asarray(state.pop.const)
        n += int((np.isnan(loss) | np.isnan(const).any(axis=-1)).sum())
    return n


def long_run(minutes: float, seed: int) -> dict:
    from symjax_sr._run import compile_count

    out = tempfile.mkdtemp(prefix="symjax_sr_soak_")
    X, y = _data(100, 2, seed)
    model = _tiny(niterations=10**9, timeout_in_seconds=minutes * 60, output_directory=out,
                  run_id="long", **LONG)
    hof = os.path.join(out, "long", "hall_of_fame.csv")
    ckpt = os.path.join(out, "long", "checkpoint.pkl")
    seen = {"rss_start": None, "rss_max": 0.0, "hof_writes": 0, "ckpt_writes": 0,
            "hof_m": None, "ckpt_m": None}
    done = threading.Event()

    def look():
        for path, key in ((hof, "hof"), (ckpt, "ckpt")):
            if os.path.exists(path) and os.path.getmtime(path) != seen[f"{key}_m"]:
                seen[f"{key}_m"] = os.path.getmtime(path)
                seen[f"{key}_writes"] += 1
        if seen["hof_writes"] and seen["rss_start"] is None:
            seen["rss_start"] = rss_mb()
        seen["rss_max"] = max(seen["rss_max"], rss_mb())

    def sample():
        while not done.wait(1.0):
            look()

    t0, c0 = time.perf_counter(), compile_count()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    model.fit(X, y)
    done.set()
    thread.join()
    look()  # the files the last iteration wrote
    start = seen["rss_start"] or rss_mb()
    return {"phase": "long_run", "rss_start_mb": round(start, 1), "rss_end_mb": round(rss_mb(), 1),
            "rss_max_mb": round(seen["rss_max"], 1),
            "rss_growth": round(seen["rss_max"] / start - 1, 4), "maps_start": None,
            "maps_end": maps(), "compiles": compile_count() - c0,
            "iterations": model.fit_info_[0]["iterations"], "nan_members": _nan_members(model),
            "hof_writes_seen": seen["hof_writes"], "checkpoint_writes_seen": seen["ckpt_writes"],
            "files_ok": None, "seconds": round(time.perf_counter() - t0, 1)}


def _child(directory: str) -> int:
    """The killed process: a search that writes its files into `directory/run`."""
    X, y = _data(100, 2, 0)
    _tiny(niterations=10**6, output_directory=directory, run_id="run", **LONG).fit(X, y)
    return 0


def _check_run(run_dir: str) -> tuple[bool, str]:
    """After a kill: the files parse, `from_file` loads, a warm start keeps every equation."""
    import pandas as pd

    from symjax_sr import PySRRegressor

    try:
        pd.read_csv(os.path.join(run_dir, "hall_of_fame.csv"))
        model = PySRRegressor.from_file(run_dir)
    except Exception as e:  # noqa: BLE001 - any failure to load is what this counts
        return False, f"load: {type(e).__name__}: {e}"
    if not os.path.exists(os.path.join(run_dir, "checkpoint.pkl")):
        return True, "no checkpoint yet (equations loaded from hall_of_fame.csv)"
    held = dict(zip(model.equations_["complexity"], model.equations_["loss"], strict=True))
    X, y = _data(100, 2, 0)
    model.set_params(warm_start=True, niterations=1, temp_equation_file=True,
                     timeout_in_seconds=None)
    try:
        model.fit(X, y)
    except Exception as e:  # noqa: BLE001
        return False, f"resume: {type(e).__name__}: {e}"
    now = dict(zip(model.equations_["complexity"], model.equations_["loss"], strict=True))
    # `equations_` is the Pareto front: a held equation may leave it when a simpler one
    # got at least as good, so "kept" means some equation at most as complex is as good
    lost = [c for c, loss in held.items()
            if not any(cn <= c and ln <= loss * (1 + 1e-6) + 1e-12 for cn, ln in now.items())]
    return (not lost), (f"lost complexities {lost} (held {held}, now {now})" if lost else "resumed")


def kills(n: int, seed: int, max_delay: float = 25.0) -> dict:
    rng = np.random.default_rng(seed)
    t0, r0, m0 = time.perf_counter(), rss_mb(), maps()
    cache = tempfile.mkdtemp(prefix="symjax_sr_soak_cache_")
    ok, notes = 0, []
    for i in range(n):
        directory = tempfile.mkdtemp(prefix="symjax_sr_kill_")
        env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache)
        log_path = os.path.join(directory, "child.log")
        with open(log_path, "wb") as log:  # a file, not a pipe: a full pipe would stall the child
            proc = subprocess.Popen([sys.executable, "-m", "symjax_sr.bench", "soak", "--child",
                                     directory], env=env, stdout=log, stderr=subprocess.STDOUT)
        hof = os.path.join(directory, "run", "hall_of_fame.csv")
        deadline = time.monotonic() + 300
        while not os.path.exists(hof) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None or not os.path.exists(hof):
            proc.kill()
            proc.wait()
            with open(log_path, errors="replace") as log:
                err = log.read()[-300:]
            notes.append(f"kill {i}: child never wrote its files: {err}")
            continue
        time.sleep(float(rng.uniform(0.0, max_delay)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        good, note = _check_run(os.path.join(directory, "run"))
        ok += good
        notes.append(f"kill {i}: {note}")
    return {"phase": "kills", "kills": n, "rss_start_mb": round(r0, 1), "rss_end_mb": round(rss_mb(), 1),
            "rss_max_mb": round(rss_mb(), 1), "maps_start": m0, "maps_end": maps(), "compiles": None,
            "nan_members": 0, "files_ok": ok / max(n, 1), "notes": notes,
            "seconds": round(time.perf_counter() - t0, 1)}


def main(args: argparse.Namespace) -> int:
    if args.child:
        return _child(args.child)
    for phase in args.phases:
        if phase == "many_fits":
            report = many_fits(args.fits, args.seed)
        elif phase == "long_run":
            report = long_run(args.minutes, args.seed)
        else:
            report = kills(args.kills, args.seed)
        if args.json:
            print(json.dumps(report), flush=True)
        else:
            print(" ".join(f"{k}={v}" for k, v in report.items() if k != "notes"), flush=True)
            for note in report.get("notes", []):
                print(f"  {note}", flush=True)
    return 0

"""Command line: `python -m symjax_sr demo` and `python -m symjax_sr fit data.csv --target y`."""

from __future__ import annotations

import argparse
import sys
import time


def _demo(args) -> int:
    import numpy as np
    import sympy

    from symjax_sr import PySRRegressor

    rng = np.random.default_rng(args.seed)
    X = rng.normal(size=(100, 5)).astype(np.float32)
    y = 2.5382 * np.cos(X[:, 3]) + X[:, 0] ** 2 - 0.5
    print("Demo: y = 2.5382*cos(x3) + x0^2 - 0.5 from 100 rows x 5 features.", flush=True)
    model = PySRRegressor(
        binary_operators=["+", "-", "*", "/"],
        unary_operators=["cos", "exp"],
        niterations=args.niterations,
        populations=args.populations,
        population_size=27,
        ncycles_per_iteration=100,
        maxsize=20,
        early_stop_condition="stop_if(loss, complexity) = loss < 1e-6 && complexity <= 12",  # PySR's form
        random_state=args.seed,
        deterministic=True,  # the same table on every run, and no kernel timing before the fit
        output_directory=args.output_directory,
        verbosity=1,
    )
    t0 = time.perf_counter()
    model.fit(X, y)
    total = time.perf_counter() - t0
    print(model)
    info = model.fit_info_[0]
    best = model.sympy()
    x0, x3 = sympy.symbols("x0 x3")
    truth = 2.5382 * sympy.cos(x3) + x0**2 - 0.5
    rounded = best.xreplace({n: round(float(n), 3) for n in best.atoms(sympy.Float)})
    found = sympy.simplify(rounded - truth.xreplace({n: round(float(n), 3) for n in truth.atoms(sympy.Float)})) == 0
    print(f"\nChosen equation: {best}")
    print(f"True formula found: {'yes' if found else 'no'}")
    print(f"Time: compile {info['compile_s']:.1f} s, search {info['wall_s']:.1f} s, "
          f"total fit {total:.1f} s ({info['iterations']} iterations, {info['num_evals']:.3g} "
          f"evaluations). Files: {model.output_directory_}/{model.run_id_}/")
    return 0 if found else 1


def _fit(args) -> int:
    import pandas as pd

    from symjax_sr import PySRRegressor

    df = pd.read_csv(args.data)
    if args.target not in df.columns:
        raise SystemExit(f"error: column {args.target!r} is not in {args.data} (columns: {list(df.columns)})")
    y = df.pop(args.target)
    overrides = {k: v for k, v in (("niterations", args.niterations),
                                   ("timeout_in_seconds", args.timeout_in_seconds),
                                   ("random_state", args.random_state),
                                   ("output_directory", args.output_directory)) if v is not None}
    if args.binary_operators:
        overrides["binary_operators"] = args.binary_operators.split(",")
    if args.unary_operators:
        overrides["unary_operators"] = args.unary_operators.split(",")
    model = PySRRegressor.from_config(args.config, **overrides) if args.config else PySRRegressor(**overrides)
    model.fit(df, y)
    print(model)
    return 0


def _enable_compilation_cache() -> None:
    """Keep compiled programs between runs of the command line (`SYMJAX_SR_CACHE=0` turns it off).

    Only the command line does this; importing symjax_sr configures nothing.
    """
    import os

    if os.environ.get("SYMJAX_SR_CACHE", "1") == "0" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    path = os.path.join(os.path.expanduser("~"), ".cache", "symjax_sr", "jax")
    jax.config.update("jax_compilation_cache_dir", path)


def main(argv=None) -> int:
    _enable_compilation_cache()
    parser = argparse.ArgumentParser(prog="python -m symjax_sr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="fit a built-in problem and print the equations")
    d.add_argument("--niterations", type=int, default=100)
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--populations", type=int, default=31, help="islands (PySR's default 31)")
    d.add_argument("--output-directory", default="outputs")
    f = sub.add_parser("fit", help="fit a CSV file")
    f.add_argument("data")
    f.add_argument("--target", required=True)
    f.add_argument("--config", help="a preset in configs/ (quick, pysr_default, thorough, gpu) or a TOML file")
    f.add_argument("--niterations", type=int)
    f.add_argument("--timeout-in-seconds", type=float)
    f.add_argument("--random-state", type=int)
    f.add_argument("--binary-operators")
    f.add_argument("--unary-operators")
    f.add_argument("--output-directory")
    args = parser.parse_args(argv)
    return {"demo": _demo, "fit": _fit}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

"""One search over several processes (hosts) with JAX's own distributed runtime.

Every process runs this same script; `jax.distributed.initialize` joins them, and the
search splits its islands over the global mesh of all their devices. Each process
ends with the same hall of fame, which is also what one process with as many devices
finds for the same seed (`--single` runs that for comparison).

On one machine, two processes over localhost (CPU, one device each):

    python examples/multihost.py --process-id 0 --num-processes 2 &
    python examples/multihost.py --process-id 1 --num-processes 2
    python examples/multihost.py --single 2        # the same search in one process

On a cluster, start it once per host with the coordinator's address (or let
`jax.distributed.initialize()` read SLURM / Cloud TPU settings with no arguments).
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (256, 2))
    return X, X[:, 0] ** 2 + np.sin(X[:, 1]) * X[:, 0]


def search(devices, niterations: int, seed: int):
    """The search every process runs: 4 islands split over `devices`."""
    from symjax_sr import make_operator_set
    from symjax_sr._options import SearchOptions
    from symjax_sr._run import run_search

    X, y = problem(seed)
    ops = make_operator_set(("+", "-", "*", "/"), ("sin", "cos"))
    opts = SearchOptions(operators=ops, n_features=2, populations=4, population_size=24,
                         ncycles_per_iteration=30, maxsize=15)
    result = run_search(X, y, opts, niterations=niterations, random_state=seed,
                        evaluator="reference", devices=devices)
    return [[e.complexity, e.loss] for e in result.hall_of_fame]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--process-id", type=int, default=0)
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--coordinator", default="localhost:12355", help="host:port of process 0")
    p.add_argument("--single", type=int, default=None,
                   help="no distributed runtime: one process with this many CPU devices")
    p.add_argument("--niterations", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import jax

    if args.single is not None:
        from symjax_sr import use_host_devices

        use_host_devices(args.single)
        hof = search(args.single, args.niterations, args.seed)
    else:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU across processes
        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)
        hof = search(jax.devices(), args.niterations, args.seed)  # every process's devices
    print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(),
                      "hall_of_fame": hof}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

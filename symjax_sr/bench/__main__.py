"""Entry point: `python -m symjax_sr.bench {eval,constants,search,...} [options]`.

Each benchmark lives in its own module `symjax_sr/bench/_<name>.py` that defines
`add_arguments(parser)` and `main(args) -> int`; it is imported only when chosen.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: benchmark name -> (module, one-line help)
BENCHMARKS = {
    "eval": ("_eval", "evaluation kernels vs a NumPy loop"),
    "constants": ("_constants", "batched constant fitting vs a scipy loop"),
    "search": ("_search", "one search on a public problem"),
    "eql": ("_eql", "EQL networks on Kim et al.'s function set"),
    "recovery": ("_recovery", "recovery over the public problems, peers in the same run"),
    "soak": ("_soak", "many fits in one process, a long run, SIGKILLs: memory and files"),
    "many": ("_many", "B regressions in one program (search_many) vs a loop of fits"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symjax_sr.bench", description=__doc__)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    modules = {}
    for name, (module, help_) in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_)
        try:
            mod = importlib.import_module(f"symjax_sr.bench.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"symjax_sr.bench.{module}":
                raise
            p.set_defaults(_missing=True)
            continue
        mod.add_arguments(p)
        modules[name] = mod
    args = parser.parse_args(argv)
    if getattr(args, "_missing", False):
        print(f"benchmark {args.benchmark!r} is not implemented yet", file=sys.stderr)
        return 2
    return modules[args.benchmark].main(args)


if __name__ == "__main__":
    sys.exit(main())

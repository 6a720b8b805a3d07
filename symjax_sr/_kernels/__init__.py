"""Fast evaluation kernels, registered with the evaluator registry on import.

- `"select"`: blocked select over size-sorted blocks (small N on CPU; GPU/TPU).
- `"switch"`: per-expression real branching over row tiles (large N on CPU).
- `"auto"`: untimed choice by backend and N; `choose_evaluator` times both instead.

Tolerance against `ReferenceEvaluator` (tests/test_kernels.py): values as the reference
itself is held to (`|v - ref64| <= 4 * spread + 1e-5 * |ref64|`, `spread` from float64
runs perturbed by a relative 1e-6); non-finite flags identical on every row whose flag
survives that perturbation. The fast float32 sin/cos differ from XLA's by ~1 ulp
(max abs error 1.5e-7 for |x| <= 1.6e6), so a chaotic row (a 1-ulp change flipping
a later domain error) may differ, as it would between two libms. Only forward-mode
derivatives (`jax.jvp`, `jax.jacfwd`) are supported: the node loops have dynamic trip
counts, which reverse mode cannot differentiate.
"""

from .._evaluate import register_evaluator
from ._auto import AutoEvaluator as AutoEvaluator
from ._auto import choose_evaluator as choose_evaluator
from ._auto import untimed_evaluator as untimed_evaluator
from ._select import SelectEvaluator as SelectEvaluator
from ._switch import SwitchEvaluator as SwitchEvaluator

register_evaluator("select", SelectEvaluator)
register_evaluator("switch", SwitchEvaluator)
register_evaluator("auto", AutoEvaluator)

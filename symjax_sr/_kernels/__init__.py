"""Fast evaluation kernels, registered with the evaluator registry on import.

- `"select"`: blocked select over size-sorted blocks (small N on CPU; GPU/TPU).
- `"switch"`: per-expression real branching over row tiles (large N on CPU).
- `"auto"`: untimed choice by backend and N; `choose_evaluator` times both instead.
"""

from .._evaluate import register_evaluator
from ._auto import AutoEvaluator as AutoEvaluator
from ._auto import choose_evaluator as choose_evaluator
from ._select import SelectEvaluator as SelectEvaluator
from ._switch import SwitchEvaluator as SwitchEvaluator

register_evaluator("select", SelectEvaluator)
register_evaluator("switch", SwitchEvaluator)
register_evaluator("auto", AutoEvaluator)

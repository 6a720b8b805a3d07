"""PySR's score and model selection over a Pareto front (simplest first).

score_i = -log(loss_i / loss_{i-1}) / (complexity_i - complexity_{i-1}) with
`loss_scale="log"` (the difference of losses with `"linear"`), 0 for the first row;
"best" = highest score among rows with loss <= 1.5 * min loss; "accuracy" = lowest
loss; "score" = highest score. These are PySR's definitions (`calculate_scores`,
`idx_model_selection`).

One departure, for "best" only: rows whose loss is at most `loss_floor` (a fit's rounding
level, `_snap.loss_atol`: 1e-10 of the constant model's loss) all fit the data exactly, and
the simplest of them is chosen. PySR's rule compares such losses as numbers, so a larger
expression whose float rounding happens to land lower (1.3e-16 against 9.9e-16 for an exact
`cos(x0 - pi/2)`) would win by the 1.5x window.
"""

from __future__ import annotations

import numpy as np

__all__ = ["compute_scores", "select_index", "MODEL_SELECTIONS"]

MODEL_SELECTIONS = ("best", "accuracy", "score")


def compute_scores(loss, complexity, loss_scale: str = "log") -> np.ndarray:
    """Score of each row of a Pareto front sorted by complexity."""
    loss = np.asarray(loss, dtype=np.float64)
    complexity = np.asarray(complexity, dtype=np.float64)
    scores = np.zeros(len(loss))
    eps = np.finfo(np.float64).tiny
    for i in range(1, len(loss)):
        dc = complexity[i] - complexity[i - 1]
        if dc <= 0:
            continue
        if loss_scale == "log":
            ratio = max(loss[i], eps) / max(loss[i - 1], eps)
            scores[i] = -np.log(ratio) / dc
        else:
            scores[i] = -(loss[i] - loss[i - 1]) / dc
    return scores


def select_index(loss, scores, model_selection: str = "best", loss_floor: float = 0.0) -> int:
    """Row chosen by PySR's `model_selection`; with "best", the simplest row whose loss is at
    most `loss_floor` where there is one (0: PySR's rule as it is)."""
    loss = np.asarray(loss, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(loss) == 0:
        raise ValueError("No equations to select from: the search found no finite-loss expression.")
    if model_selection == "accuracy":
        return int(np.argmin(loss))
    if model_selection == "score":
        return int(np.argmax(scores))
    if model_selection == "best":
        exact = loss <= loss_floor
        if loss_floor > 0 and exact.any():
            return int(np.argmax(exact))
        ok = loss <= 1.5 * np.min(loss)
        return int(np.argmax(np.where(ok, scores, -np.inf)))
    raise ValueError(
        f"Unknown `model_selection` {model_selection!r}; valid: {', '.join(MODEL_SELECTIONS)}."
    )

"""PySR's `logger_spec`: a search's progress written to TensorBoard while it runs.

`TensorBoardLoggerSpec(log_dir, log_interval, overwrite)` has PySR's fields and
defaults. Every `log_interval` iterations the logger writes, for each output (tags
prefixed `output_<j>/` when there are several):

- `search/data/summaries/min_loss`: the best loss in the hall of fame;
- `search/data/summaries/pareto_volume`: the area the Pareto front dominates in
  (log10 complexity, log10 loss) space, against the reference point
  (log10(maxsize + 1), log10 of the front's largest loss); it grows as the front improves
  (SymbolicRegression.jl logs a convex-hull variant under the same name);
- `search/data/summaries/num_evals`, `search/data/summaries/evals_per_s`;
- `search/data/equations/loss_complexity_<c>` for each complexity on the front;
- a text summary `search/data/equations/front`: the front as a markdown table.

Hyperparameters (the estimator's parameters, non-numbers as strings) are written once
at the start. The writer is `tensorboardX` (`pip install symjax_sr[tensorboard]`):
pure Python, no TensorFlow, and it writes TensorBoard's standard event files.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import os
from typing import Any

__all__ = ["AbstractLoggerSpec", "TensorBoardLoggerSpec", "pareto_volume"]


class AbstractLoggerSpec(abc.ABC):
    """A logger for a search: `create_logger()`, then `write_hparams`, `log_iteration`
    every `log_interval` iterations, and `close`."""

    log_interval: int = 1

    @abc.abstractmethod
    def create_logger(self) -> Any:
        """A new logger (one per fit)."""

    @abc.abstractmethod
    def write_hparams(self, logger: Any, hparams: dict[str, Any]) -> None:
        """The fit's parameters, once."""

    @abc.abstractmethod
    def log_iteration(self, logger: Any, step: int, scalars: dict[str, float], text: dict[str, str]) -> None:
        """One iteration's scalars and text."""

    @abc.abstractmethod
    def close(self, logger: Any) -> None:
        """Flush and close the logger."""


@dataclasses.dataclass(frozen=True)
class TensorBoardLoggerSpec(AbstractLoggerSpec):
    """TensorBoard logs in `log_dir`; if it exists and `overwrite` is False, in
    `{log_dir}_1`, `{log_dir}_2` ... (PySR's rule). `log_interval`: iterations between writes."""

    log_dir: str = "logs/run"
    log_interval: int = 1
    overwrite: bool = False

    def __post_init__(self):
        if isinstance(self.log_interval, bool) or not isinstance(self.log_interval, int) \
                or self.log_interval < 1:
            raise ValueError(f"`log_interval` must be an integer >= 1, got {self.log_interval!r}.")

    def resolved_dir(self) -> str:
        """The directory the next logger writes to."""
        path = str(self.log_dir)
        if self.overwrite or not os.path.exists(path):
            return path
        k = 1
        while os.path.exists(f"{path}_{k}"):
            k += 1
        return f"{path}_{k}"

    def create_logger(self):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError("TensorBoard logging needs tensorboardX: "
                              "`pip install symjax_sr[tensorboard]` (or `pip install tensorboardX`).") from None
        path = self.resolved_dir()
        if self.overwrite and os.path.isdir(path):
            for name in os.listdir(path):
                if name.startswith("events.out.tfevents"):
                    os.remove(os.path.join(path, name))
        return SummaryWriter(logdir=path)

    def write_hparams(self, logger, hparams):
        clean = {k: v if isinstance(v, (bool, int, float)) else str(v) for k, v in hparams.items()}
        logger.add_text("hparams", "\n".join(f"- `{k}` = `{v}`" for k, v in sorted(clean.items())), 0)

    def log_iteration(self, logger, step, scalars, text):
        for tag, value in scalars.items():
            logger.add_scalar(tag, float(value), step)
        for tag, value in text.items():
            logger.add_text(tag, value, step)

    def close(self, logger):
        logger.flush()
        logger.close()


def pareto_volume(front: list[tuple[int, float]], maxsize: int) -> float:
    """Area dominated by the front `[(complexity, loss)]` in (log10 complexity, log10
    loss) space, against (log10(maxsize + 1), log10 of the largest finite front loss)."""
    pts = sorted((c, l) for c, l in front if math.isfinite(l) and l > 0 and c >= 1)
    if not pts:
        return 0.0
    x_ref = math.log10(maxsize + 1)
    y_ref = max(math.log10(l) for _, l in pts)
    area, best = 0.0, y_ref
    xs = [math.log10(c) for c, _ in pts] + [x_ref]
    for k, (_, l) in enumerate(pts):
        best = min(best, math.log10(l))
        area += (xs[k + 1] - xs[k]) * (y_ref - best)
    return area


def iteration_record(entries, info: dict, maxsize: int, prefix: str, precision: int,
                     to_string) -> tuple[dict[str, float], dict[str, str]]:
    """The scalars and text of one iteration from the hall of fame `entries`."""
    front = [e for e in entries if e.pareto]
    losses = [e.loss for e in entries]
    scalars = {
        "search/data/summaries/min_loss": min(losses, default=math.inf),
        "search/data/summaries/pareto_volume": pareto_volume([(e.complexity, e.loss) for e in front], maxsize),
        "search/data/summaries/num_evals": info["num_evals"],
        "search/data/summaries/evals_per_s": info["evals_per_s"],
    }
    for e in front:
        scalars[f"search/data/equations/loss_complexity_{e.complexity}"] = e.loss
    rows = ["| complexity | loss | equation |", "|---|---|---|"]
    rows += [f"| {e.complexity} | {e.loss:.{precision}g} | `{to_string(e.tree)}` |" for e in front]
    text = {"search/data/equations/front": "\n".join(rows)}
    return ({prefix + k: v for k, v in scalars.items()}, {prefix + k: v for k, v in text.items()})

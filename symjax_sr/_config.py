"""Named search presets: TOML files in the repository's `configs/` (or any path)."""

from __future__ import annotations

import os
import sys
from typing import Any

from ._params import check_unknown_kwargs

__all__ = ["load_config", "config_dir"]


def config_dir() -> str:
    """The presets: `symjax_sr/configs` in a wheel, the repository's `configs/` in a checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    packaged = os.path.join(here, "configs")
    return packaged if os.path.isdir(packaged) else os.path.join(os.path.dirname(here), "configs")


def load_config(name_or_path: str) -> dict[str, Any]:
    """Parameters from a preset name (`"quick"`) or a TOML file path; unknown keys raise."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    path = name_or_path
    if not os.path.exists(path):
        path = os.path.join(config_dir(), f"{name_or_path}.toml")
    if not os.path.exists(path):
        names = sorted(f[:-5] for f in os.listdir(config_dir()) if f.endswith(".toml")) \
            if os.path.isdir(config_dir()) else []
        raise ValueError(f"No config {name_or_path!r}: not a file, nor one of {names}.")
    with open(path, "rb") as f:
        params = tomllib.load(f)
    check_unknown_kwargs({k: v for k, v in params.items() if not _known(k)})
    return params


def _known(name: str) -> bool:
    from ._params import PYSR_DEFAULTS

    return name in PYSR_DEFAULTS

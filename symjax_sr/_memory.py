"""Memory planning: what a compiled search needs, against what the device has free.

XLA's buffer assignment is known once a program is compiled and before it runs, so the
search checks its iteration's arguments, outputs and temporaries against the memory free
on the device (host RAM for CPU) before the first iteration, and stops with a message
naming the options that shrink it instead of failing out of memory mid-run.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SearchMemoryError", "program_bytes", "available_bytes", "check_memory"]

#: Fraction of the free memory a search may plan to use (the rest is headroom for the
#: host loop, the hall of fame on the host, and other programs in the process).
USABLE = 0.8


class SearchMemoryError(MemoryError):
    """The search would not fit in the device's free memory (raised before it starts)."""


def program_bytes(compiled: Any) -> int | None:
    """Bytes a compiled program holds while it runs (arguments, outputs and temporaries,
    donated buffers counted once), or None where the backend does not report it."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement the analysis
        return None
    if stats is None:
        return None
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes
               + stats.temp_size_in_bytes - stats.alias_size_in_bytes)


def available_bytes(device: Any) -> int | None:
    """Free memory of `device`: `memory_stats` where the backend has it (GPU, TPU),
    else the host's `MemAvailable` (CPU); None when neither is known."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(need: int | None, free: int | None, *, rows: int, batching: bool,
                 lanes: int) -> None:
    """Raise `SearchMemoryError` when `need` bytes exceed the usable part of `free`."""
    if need is None or free is None or need <= USABLE * free:
        return
    fixes = ["`populations` or `population_size` (members evaluated at once: "
             f"{lanes})", "`maxsize`"]
    if not batching:
        fixes.insert(0, f"`batching=True` with a `batch_size` below {rows} rows")
    else:
        fixes.insert(0, "a smaller `batch_size`")
    raise SearchMemoryError(
        f"This search needs about {need / 2**20:,.0f} MiB per iteration but only "
        f"{free / 2**20:,.0f} MiB are free ({USABLE:.0%} usable). Reduce it with "
        + ", or ".join(fixes) + "."
    )

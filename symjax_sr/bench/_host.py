"""`--devices N` for the benchmarks that split their work over devices."""

from __future__ import annotations


def host_devices(n: int | None) -> None:
    """Give the CPU backend `n` devices (none asked: nothing). Call before JAX starts;
    only the CPU backend reads it."""
    if n is None:
        return
    if n < 1:
        raise SystemExit(f"--devices must be at least 1, got {n}.")
    from symjax_sr import use_host_devices

    use_host_devices(n)

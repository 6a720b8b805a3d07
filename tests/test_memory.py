"""Memory planning: XLA's estimate of a program, the free memory, the error that names a fix.

The search's own use of it (stopping before the first iteration) is tested in
`test_search.py`, which shares its compiled search.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import pytest

from symjax_sr import SearchMemoryError
from symjax_sr._memory import USABLE, available_bytes, check_memory, program_bytes


def test_program_bytes_counts_the_argument_and_output():
    x = jnp.ones((1000, 256), jnp.float32)
    compiled = jax.jit(lambda a: jnp.sin(a) * 2.0 + a).lower(x).compile()
    assert program_bytes(compiled) >= 2 * x.nbytes


def test_program_bytes_grows_with_the_rows():
    f = jax.jit(lambda a: jnp.cumsum(jnp.exp(a), axis=0) * a)
    small, large = (program_bytes(f.lower(jnp.ones((n, 64))).compile()) for n in (100, 10_000))
    assert large >= 50 * small


def test_available_bytes_on_the_host_lies_between_free_and_total_memory():
    page = os.sysconf("SC_PAGE_SIZE")
    free, total = os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page
    got = available_bytes(jax.devices("cpu")[0])
    assert 0.5 * free <= got <= total


def test_check_memory_names_the_options_that_shrink_the_search():
    check_memory(None, 10, rows=5, batching=False, lanes=10)  # unknown need: no check
    check_memory(80, 100, rows=5, batching=False, lanes=10)  # within the usable fraction
    assert USABLE == 0.8
    with pytest.raises(SearchMemoryError, match=r"batching=True.*below 5000 rows.*465\)"):
        check_memory(2**30, 2**29, rows=5000, batching=False, lanes=465)
    with pytest.raises(SearchMemoryError, match="a smaller `batch_size`"):
        check_memory(2**30, 2**29, rows=5000, batching=True, lanes=465)
    assert issubclass(SearchMemoryError, MemoryError)

"""The process-wide cache of compiled search programs: reused by equal shapes, bounded."""

import jax
import jax.numpy as jnp

from symjax_sr import _run


def _program(*, evaluator, opts, x):
    return x * evaluator + opts


_JIT = jax.jit(_program, static_argnames=("evaluator", "opts"))


def test_reused_for_equal_shapes_and_bounded(monkeypatch):
    monkeypatch.setattr(_run, "COMPILED_MAX", 3)
    _run.clear_compiled()
    first = _run._compiled(_JIT, 2.0, 1.0, x=jnp.zeros(4))
    assert _run._compiled(_JIT, 2.0, 1.0, x=jnp.ones(4)) is first  # same shapes: no compile
    assert float(first(x=jnp.ones(4))[0]) == 3.0
    assert _run._compiled(_JIT, 3.0, 1.0, x=jnp.ones(4)) is not first  # other static options
    for n in range(5, 10):
        _run._compiled(_JIT, 2.0, 1.0, x=jnp.zeros(n))
        assert len(_run._COMPILED) <= 3
    # the least recently used went first: the 4-row program was evicted
    assert _run._compiled(_JIT, 2.0, 1.0, x=jnp.zeros(4)) is not first
    _run.clear_compiled()
    assert len(_run._COMPILED) == 0

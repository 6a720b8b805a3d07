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
    assert float(_run._compiled(_JIT, 2.0, 1.0, x=jnp.zeros(9))(x=jnp.ones(9))[0]) == 3.0
    # the least recently used went first: the 4-row program was evicted
    assert _run._compiled(_JIT, 2.0, 1.0, x=jnp.zeros(4)) is not first
    _run.clear_compiled()
    assert len(_run._COMPILED) == 0


def test_an_evicted_program_is_released_by_jax_too(monkeypatch):
    # JAX keeps its own caches of traces, lowerings and executables; unless they are
    # dropped with the evicted program, it stays alive (memory maps and all) and asking
    # for it again costs no backend compile.
    events, recording = [], [True]
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *_, **__: recording[0] and events.append(name))
    monkeypatch.setattr(_run, "COMPILED_MAX", 1)
    _run.clear_compiled()
    jitted = jax.jit(_program, static_argnames=("evaluator", "opts"))
    _run._compiled(jitted, 2.0, 1.0, x=jnp.zeros(4))
    held = _run._compiled(jitted, 2.0, 1.0, x=jnp.zeros(5))  # evicts the 4-row program
    before = len(events)
    _run._compiled(jitted, 2.0, 1.0, x=jnp.zeros(4))
    assert "/jax/core/compile/backend_compile_duration" in events[before:]
    assert float(held(x=jnp.ones(5))[0]) == 3.0  # evicted later, but a held object still runs
    recording[0] = False  # listeners cannot be removed; this one stops collecting
    _run.clear_compiled()

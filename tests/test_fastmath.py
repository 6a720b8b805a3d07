"""Fast float32 sin/cos against NumPy (float64 of the same float32 input).

Tolerance: max abs error 2e-7 for |x| <= 1e6 (measured 1.45e-7; `jnp.sin` reaches
3.3e-8). Beyond the reduction's range the kernel falls back to `jnp.sin/cos`.
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from symjax_sr._fastmath import fast_cos, fast_sin, fast_sincos

ATOL = 2e-7
_sin = jax.jit(fast_sin)
_cos = jax.jit(fast_cos)

# Fixed shape, so one compilation serves every example.
arrays = hnp.arrays(
    np.float32, 64,
    elements=st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False),
)


@given(arrays, st.sampled_from([1.0, 1e-3, 1e-6]))
def test_sin_cos_match_numpy(x, shrink):
    x = (x * np.float32(shrink)).astype(np.float32)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(np.asarray(_sin(x)), np.sin(x64), rtol=0, atol=ATOL)
    np.testing.assert_allclose(np.asarray(_cos(x)), np.cos(x64), rtol=0, atol=ATOL)


def test_dense_grid_and_quadrant_boundaries():
    rng = np.random.default_rng(0)
    k = rng.integers(-600_000, 600_000, 100_000)
    x = np.concatenate([
        rng.uniform(-10, 10, 100_000),
        k * (np.pi / 2) + rng.uniform(-1e-3, 1e-3, k.shape),  # near multiples of pi/2
        rng.uniform(-1e6, 1e6, 100_000),
    ]).astype(np.float32)
    x64 = x.astype(np.float64)
    s, c = (np.asarray(a, np.float64) for a in jax.jit(fast_sincos)(x))
    assert np.abs(s - np.sin(x64)).max() <= ATOL
    assert np.abs(c - np.cos(x64)).max() <= ATOL


def test_nonfinite_gives_nan_and_large_falls_back():
    x = np.array([np.inf, -np.inf, np.nan, 3e7, -1e30, 0.0], np.float32)
    s, c = np.asarray(_sin(x)), np.asarray(_cos(x))
    assert np.isnan(s[:3]).all() and np.isnan(c[:3]).all()
    np.testing.assert_allclose(s[3:], np.sin(x[3:].astype(np.float64)), atol=ATOL)
    np.testing.assert_allclose(c[3:], np.cos(x[3:].astype(np.float64)), atol=ATOL)


def test_derivatives_forward_and_reverse():
    x = jnp.linspace(-20, 20, 101, dtype=jnp.float32)
    _, ts = jax.jvp(fast_sin, (x,), (jnp.ones_like(x),))
    _, tc = jax.jvp(fast_cos, (x,), (jnp.ones_like(x),))
    np.testing.assert_allclose(ts, np.cos(np.asarray(x, np.float64)), atol=ATOL)
    np.testing.assert_allclose(tc, -np.sin(np.asarray(x, np.float64)), atol=ATOL)
    g = jax.grad(lambda v: fast_sin(v).sum())(x)
    np.testing.assert_allclose(g, np.cos(np.asarray(x, np.float64)), atol=ATOL)
    _, t_nan = jax.jvp(fast_sin, (jnp.array([jnp.inf]),), (jnp.ones(1),))
    assert np.isnan(t_nan).all()


def test_float64_keeps_xla():
    with jax.enable_x64(True):
        x = jnp.linspace(-5, 5, 11, dtype=jnp.float64)
        np.testing.assert_allclose(fast_sin(x), np.sin(np.asarray(x)), rtol=0, atol=1e-15)

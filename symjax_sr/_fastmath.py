"""Vectorisable float32 sin/cos for XLA:CPU, where `jnp.sin`/`jnp.cos` are 7-10x slower than NumPy.

Measured on this project's CPU (DESIGN.md §3, re-measured for this module at 1e6
elements): `jnp.sin`/`jnp.cos` 0.29 G elem/s vs NumPy 1.9; `exp` 3.1 vs 2.2, `log`
2.2 vs 2.7, `sqrt` 4.3 vs 2.9 (no fast version needed), `tanh` 1.45 vs 2.8 (kept:
inside fused kernels it is not the bottleneck, and a rational tanh needs care at 0).

Algorithm (Cephes `sinf`/`cosf`): `k = round(x * 2/pi)`, `r = x - k*pi/2` by a
Cody-Waite reduction, then minimax polynomials on |r| <= pi/4 and the quadrant
`k mod 4` picks sin/cos and the sign. Two pitfalls measured in DESIGN.md §3:

- the float "magic number" rounding trick is folded away by XLA; use `jnp.round`
  and integer quadrants.
- `k * DP1` must be exact. Cephes' 3-part split is exact only for |k| < 2^16, so `k`
  is split into `kh` (a multiple of 2^12, at most 8 significant bits) and `kl`
  (|kl| <= 2^11) and every product of the first two parts is exact for |x| <= 1.6e6.

Beyond `_LIMIT` the kernel falls back to `jnp.sin`/`jnp.cos` for the whole array
(a real branch, so the fast path pays only one reduction). inf and NaN give NaN.
The derivative is exact (`d sin = cos`), computed with the same fast kernel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["fast_sin", "fast_cos", "fast_sincos", "FAST_UNARY"]

# pi/2 = _DP1 + _DP2 + _DP3; _DP1 has 8 significant bits, _DP2 12, _DP3 is the rest.
_DP1 = np.float32(1.5703125)
_DP2 = np.float32(4.837512969970703125e-4)
_DP3 = np.float32(7.54978995489188216e-8)
_TWO_OVER_PI = np.float32(0.636619772367581343)
#: |x| above which the whole array takes the `jnp` path: k stays below 2^20.
_LIMIT = np.float32(1.6e6)

# Cephes minimax coefficients on [-pi/4, pi/4].
_S1, _S2, _S3 = np.float32(-1.9515295891e-4), np.float32(8.3321608736e-3), np.float32(-1.6666654611e-1)
_C1, _C2, _C3 = np.float32(2.443315711809948e-5), np.float32(-1.388731625493765e-3), np.float32(4.166664568298827e-2)


def _reduce(x: Float[Array, ...]) -> tuple[Float[Array, ...], Array]:
    """`(r, q)` with x = r + (4n + q) pi/2, |r| <= pi/4 and q in 0..3 (int32)."""
    k = jnp.round(x * _TWO_OVER_PI)
    kh = jnp.round(k * np.float32(1.0 / 4096.0)) * np.float32(4096.0)
    kl = k - kh
    r = x - kh * _DP1
    r = r - kl * _DP1
    r = r - kh * _DP2
    r = r - kl * _DP2
    r = r - k * _DP3
    # Non-finite k is clamped before the int cast (r is NaN there anyway).
    q = jnp.where(jnp.isfinite(k), k, 0.0).astype(jnp.int32) & 3
    return r, q


def _polys(r: Float[Array, ...]) -> tuple[Float[Array, ...], Float[Array, ...]]:
    z = r * r
    s = ((_S1 * z + _S2) * z + _S3) * z * r + r
    c = ((_C1 * z + _C2) * z + _C3) * z * z - np.float32(0.5) * z + np.float32(1.0)
    return s, c


def _sincos_fast(x):
    r, q = _reduce(x)
    s, c = _polys(r)
    swap = (q & 1) == 1
    sin = jnp.where(swap, c, s)
    cos = jnp.where(swap, s, c)
    sin = jnp.where((q & 2) == 2, -sin, sin)
    cos = jnp.where(((q + 1) & 2) == 2, -cos, cos)
    return sin, cos


def _sincos(x):
    if x.dtype != jnp.float32:
        # float64 (x64 mode) and other dtypes keep XLA's implementations.
        return jnp.sin(x), jnp.cos(x)
    big = jnp.any(jnp.abs(x) > _LIMIT)
    return jax.lax.cond(big, lambda v: (jnp.sin(v), jnp.cos(v)), _sincos_fast, x)


@jax.custom_jvp
def fast_sincos(x: Float[Array, ...]) -> tuple[Float[Array, ...], Float[Array, ...]]:
    """`(sin(x), cos(x))` in one pass; float32 max abs error ~1e-7 for |x| <= 1.6e6."""
    return _sincos(x)


@fast_sincos.defjvp
def _fast_sincos_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    s, c = _sincos(x)
    return (s, c), (c * t, -s * t)


@jax.custom_jvp
def fast_sin(x: Float[Array, ...]) -> Float[Array, ...]:
    """float32 sine, vectorisable on XLA:CPU; NaN for inf/NaN input."""
    return _sincos(x)[0]


@fast_sin.defjvp
def _fast_sin_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    s, c = _sincos(x)
    return s, c * t


@jax.custom_jvp
def fast_cos(x: Float[Array, ...]) -> Float[Array, ...]:
    """float32 cosine, vectorisable on XLA:CPU; NaN for inf/NaN input."""
    return _sincos(x)[1]


@fast_cos.defjvp
def _fast_cos_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    s, c = _sincos(x)
    return c, -s * t


#: Operator name -> fast JAX implementation, used by the kernels in place of `jax_fn`.
FAST_UNARY = {"sin": fast_sin, "cos": fast_cos}

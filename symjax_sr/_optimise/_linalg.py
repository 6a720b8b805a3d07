"""Small batched linear algebra for the optimisers: narrow tangent widths and SPD solves.

A member rarely uses every slot of its constant table (15 slots at `maxsize=30`), so
the optimisers can work on the narrowest of a few compiled widths that covers every
slot used by the batch (`width_branch`, then one `lax.switch` branch per width).
XLA:CPU's batched Cholesky is slow for tiny matrices (3000 lanes × 3 dampings of 8×8:
3.4 ms against 0.67 ms for `spd_solve`'s unrolled elementwise form), so the narrow
widths (up to 8) are solved unrolled. The full width keeps XLA's Cholesky: the unrolled
form's rounding depends on a lane's position in its batch (vectorised loop body or
scalar remainder), and the search, which compiles the full width only, must give the
same result on 1 and N devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

__all__ = ["spd_solve", "tangent_widths", "width_branch"]

#: Largest width solved by the unrolled Cholesky (its op count grows as K³).
_UNROLLED_MAX = 8
#: Matrices per LAPACK call (`_lapack_solve`).
_LAPACK_CHUNK = 16


def tangent_widths(narrow: tuple[int, ...], K: int) -> tuple[int, ...]:
    """The widths compiled for a table of `K` slots: those of `narrow` below `K`, then `K`."""
    return tuple(sorted({w for w in narrow if w < K})) + (K,)


def width_branch(free: Bool[Array, "lanes nconst"], widths: tuple[int, ...]) -> Int[Array, ""]:
    """Index into `widths` of the narrowest width covering every slot that some lane of
    the batch uses."""
    K = free.shape[-1]
    used = jnp.any(free, axis=0)
    kmax = jnp.max(jnp.where(used, jnp.arange(1, K + 1), 0))
    return jnp.searchsorted(jnp.asarray(widths), kmax)


def _lapack_solve(A: Float[Array, "*batch k k"], b: Float[Array, "*batch k"]) -> Float[Array, "*batch k"]:
    """XLA's (LAPACK's) Cholesky solve, `_LAPACK_CHUNK` matrices per call. jaxlib 0.10's
    CPU LAPACK kernels hand a larger batch to the intra-op thread pool and block until
    it is done; when every pool thread runs such a kernel at once (one per device in a
    sharded search with 12 islands per device on 2 cores) none is left to do the work,
    and the search hangs. Each matrix is factored on its own, so the chunking does not
    change a result."""
    K = A.shape[-1]
    batch = A.shape[:-2]
    A2, b2 = A.reshape((-1, K, K)), b.reshape((-1, K))

    def solve(ab):
        factor = jax.scipy.linalg.cho_factor(ab[0])
        return jax.scipy.linalg.cho_solve(factor, ab[1][..., None])[..., 0]

    return jax.lax.map(solve, (A2, b2), batch_size=_LAPACK_CHUNK).reshape(batch + (K,))


def spd_solve(
    A: Float[Array, "*batch k k"], b: Float[Array, "*batch k"], unrolled: bool = True
) -> Float[Array, "*batch k"]:
    """`A⁻¹ b` for symmetric positive-definite `A` by Cholesky, unrolled elementwise
    when `unrolled` and `k <= 8`, else XLA's. A pivot that is not positive gives a
    non-finite solution (the caller rejects that step)."""
    K = A.shape[-1]
    if not unrolled or K > _UNROLLED_MAX:
        return _lapack_solve(A, b)
    cols = []  # column j of the factor L, as [..., K] (zero above the diagonal)
    rows = jnp.arange(K)
    for j in range(K):
        v = A[..., :, j]
        for k in range(j):
            v = v - cols[k] * cols[k][..., j : j + 1]
        v = jnp.where(rows >= j, v / jnp.sqrt(v[..., j : j + 1]), 0.0)
        cols.append(v)
    z = []  # L z = b
    for i in range(K):
        s = b[..., i]
        for k in range(i):
            s = s - cols[k][..., i] * z[k]
        z.append(s / cols[i][..., i])
    x = [None] * K  # Lᵀ x = z
    for i in reversed(range(K)):
        s = z[i]
        for k in range(i + 1, K):
            s = s - cols[i][..., k] * x[k]
        x[i] = s / cols[i][..., i]
    return jnp.stack(x, axis=-1)

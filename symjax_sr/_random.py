"""Random expressions of a given size, generated inside jit from a key.

A tree of exactly `size` nodes is drawn node by node in postfix order. At each
position the node kind (leaf, unary, binary) is drawn among the kinds that still
allow a valid expression of the requested size to be completed, so every draw is
valid by construction; operators, features and leaf kinds are uniform, and
constants are standard normal, as PySR draws them. `maxdepth` is met by drawing a few
candidates and keeping the first that satisfies it (a single leaf otherwise).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int, PRNGKeyArray

from ._operators import CONST, FIRST_OP, PAD, VAR, OperatorSet
from ._tree import Population, Tree, structure

__all__ = ["random_tree", "random_population"]


def _feasible(depth_after, remaining, has_unary: bool, has_binary: bool):
    """Can a stack of height `depth_after` be reduced to one value in `remaining` nodes?"""
    if has_unary and has_binary:
        return (depth_after >= 1) & (depth_after - 1 <= remaining)
    if has_binary:
        return (depth_after >= 1) & (depth_after - 1 <= remaining) & (
            (remaining - (depth_after - 1)) % 2 == 0
        )
    if has_unary:
        return depth_after == 1
    return (depth_after == 1) & (remaining == 0)


def feasible_size(size, operators: OperatorSet):
    """The largest valid size <= `size` (with only binary operators sizes are odd); for a
    Python int or an integer array."""
    if not operators.unary and operators.binary:
        return size - (size % 2 == 0)
    if not operators.binary and not operators.unary:
        return size * 0 + 1
    return size


def _opcodes(operators: OperatorSet, arity: int) -> list[int]:
    """The opcodes of the operators of this arity."""
    return [FIRST_OP + i for i, o in enumerate(operators.operators) if o.arity == arity]


def random_tree(
    key: PRNGKeyArray,
    size: Int[Array, ""],
    operators: OperatorSet,
    n_features: int | Int[Array, ""],
    length: int,
    nconst: int,
    dtype=jnp.float32,
):
    """One random expression of `size` nodes (clipped to a valid size <= `length`).

    Returns `(op [length], arg [length], const [nconst])`, right-aligned postfix.
    At most `nconst` constants are drawn; further leaves become variables.
    """
    has_u, has_b = bool(operators.unary), bool(operators.binary)
    unary = jnp.array(_opcodes(operators, 1) or [0])
    binary = jnp.array(_opcodes(operators, 2) or [0])
    size = feasible_size(jnp.clip(size, 1, length), operators)
    L = length

    def step(carry, inp):
        depth, nconst_used = carry
        i, k = inp
        k_kind, k_op, k_leaf, k_feat, k_val = jax.random.split(k, 5)
        real = i >= L - size
        remaining = L - 1 - i
        ok_leaf = _feasible(depth + 1, remaining, has_u, has_b)
        ok_unary = (depth >= 1) & _feasible(depth, remaining, has_u, has_b) & has_u
        ok_binary = (depth >= 2) & _feasible(depth - 1, remaining, has_u, has_b) & has_b
        logits = jnp.log(jnp.array([ok_leaf, ok_unary, ok_binary], dtype=jnp.float32))
        kind = jax.random.categorical(k_kind, logits)
        use_const = jax.random.bernoulli(k_leaf) & (nconst_used < nconst)
        leaf_op = jnp.where(use_const, CONST, VAR)
        leaf_arg = jnp.where(use_const, nconst_used, jax.random.randint(k_feat, (), 0, n_features))
        u = unary[jax.random.randint(k_op, (), 0, unary.shape[0])]
        b = binary[jax.random.randint(k_op, (), 0, binary.shape[0])]
        op = jnp.select([kind == 0, kind == 1], [leaf_op, u], b)
        arg = jnp.where(kind == 0, leaf_arg, 0)
        op = jnp.where(real, op, PAD)
        arg = jnp.where(real, arg, 0)
        value = jax.random.normal(k_val, (), dtype)
        depth = depth + jnp.where(real, jnp.array([1, 0, -1], jnp.int32)[kind], 0)
        nconst_used = nconst_used + (op == CONST).astype(jnp.int32)
        return (depth, nconst_used), (op, arg, value)

    keys = jax.random.split(key, L)
    _, (op, arg, value) = jax.lax.scan(step, (jnp.int32(0), jnp.int32(0)), (jnp.arange(L), keys))
    slot = jnp.where(op == CONST, arg, nconst)
    const = jnp.zeros((nconst,), dtype).at[slot].set(value, mode="drop")
    return op.astype(jnp.int32), arg.astype(jnp.int32), const


def random_population(
    key: PRNGKeyArray,
    pop_size: int,
    operators: OperatorSet,
    n_features: int | Int[Array, ""],
    length: int,
    nconst: int,
    *,
    min_size: int = 1,
    max_size: int | None = None,
    maxdepth: int | None = None,
    candidates: int = 4,
    dtype=jnp.float32,
) -> Population:
    """`pop_size` random expressions, sizes uniform in `[min_size, max_size]`.

    Jittable with the integer arguments static. With `maxdepth`, each expression is
    the first of `candidates` draws whose depth fits (a single variable if none does).
    """
    max_size = length if max_size is None else min(max_size, length)
    if not 1 <= min_size <= max_size:
        raise ValueError(f"Need 1 <= min_size ({min_size}) <= max_size ({max_size}).")
    arity = operators.arity_table

    def one(k):
        k_size, k_tree = jax.random.split(k)
        size = jax.random.randint(k_size, (), min_size, max_size + 1)
        if maxdepth is None:
            return random_tree(k_tree, size, operators, n_features, length, nconst, dtype)
        ops, args, consts = jax.vmap(
            lambda kk: random_tree(kk, size, operators, n_features, length, nconst, dtype)
        )(jax.random.split(k_tree, candidates))
        depth = jax.vmap(lambda o: structure(o, arity)[2].max())(ops)
        fits = depth <= maxdepth
        idx = jnp.argmax(fits)
        leaf_op = jnp.zeros((length,), jnp.int32).at[-1].set(VAR)
        any_fit = fits.any()
        return (
            jnp.where(any_fit, ops[idx], leaf_op),
            jnp.where(any_fit, args[idx], 0),
            jnp.where(any_fit, consts[idx], 0.0),
        )

    op, arg, const = jax.vmap(one)(jax.random.split(key, pop_size))
    return Population(op=op, arg=arg, const=const)


def numpy_rng_population(seed: int, pop_size: int, operators: OperatorSet, n_features: int,
                         length: int, nconst: int, **kw) -> Population:
    """Host convenience: a random population from an integer seed."""
    pop = jax.jit(
        random_population, static_argnums=(1, 2, 3, 4, 5), static_argnames=tuple(kw)
    )(jax.random.key(seed), pop_size, operators, n_features, length, nconst, **kw)
    return Population(op=np.asarray(pop.op), arg=np.asarray(pop.arg), const=np.asarray(pop.const))


def host_random_trees(seed: int, count: int, operators: OperatorSet, n_features: int,
                      max_size: int, nconst: int) -> list[Tree]:
    """`count` random expressions drawn with NumPy, sizes uniform in `[1, max_size]` (one
    less where only binary operators cannot make an even size), at most `nconst`
    constants each.

    For timing kernels on a fit's shapes before its search (`choose_evaluator`): no
    program to compile, where `random_population` compiles for seconds (2.7 s jitted,
    4.9 s eagerly, for 256 expressions on a cold 2-core machine). Not the search's
    draws: no constraints, no `maxdepth`.
    """
    rng = np.random.default_rng(seed)
    unary, binary = _opcodes(operators, 1), _opcodes(operators, 2)

    def grow(n: int, out: list[tuple[int, int, float]]) -> None:
        kinds = (["unary"] if unary and n >= 2 else []) + (["binary"] if binary and n >= 3 else [])
        if not kinds:
            if rng.random() < 0.5:
                out.append((VAR, int(rng.integers(n_features)), 0.0))
            else:
                out.append((CONST, 0, float(rng.standard_normal())))
            return
        if kinds[int(rng.integers(len(kinds)))] == "unary":
            grow(n - 1, out)
            out.append((unary[int(rng.integers(len(unary)))], 0, 0.0))
            return
        left = int(rng.integers(1, n - 1))
        if not unary:  # binary trees only: both sides odd
            left -= 1 - left % 2
        grow(left, out)
        grow(n - 1 - left, out)
        out.append((binary[int(rng.integers(len(binary)))], 0, 0.0))

    trees = []
    for _ in range(count):
        size = int(feasible_size(int(rng.integers(1, max_size + 1)), operators))
        nodes: list[tuple[int, int, float]] = []
        grow(size, nodes)
        op, arg, value = (np.asarray(x) for x in zip(*nodes))
        extra = np.flatnonzero(op == CONST)[nconst:]  # beyond the table: features instead
        op[extra] = VAR
        arg[extra] = rng.integers(n_features, size=len(extra))
        value[extra] = 0.0
        trees.append(Tree(op, arg, value))
    return trees

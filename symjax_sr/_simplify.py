"""Simplification inside jit: constant folding and combining constants of `+`/`*` chains.

This is what PySR's `simplify_tree!` + `combine_operators` do between cycles, written
on fixed-shape postfix arrays: operator subtrees without variables collapse into a
single constant holding their value, and `(Y op c1) op c2` (any argument order,
`op` one of `+`, `*`) becomes `Y op (c1 op c2)`. Beyond PySR, inverse unary pairs that
are the identity on every real input (`log(exp(Y))`, `-(-Y)`) are cancelled, and
`(Y ^ a) ^ b` with constant `a, b` becomes `Y ^ (a·b)` wherever that is the same
function on every input where the original is finite. All of these only ever shrink a
tree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._evaluate import apply_operators
from ._mutate import Nodes, assemble
from ._operators import CONST, PAD, VAR, OperatorSet
from ._tree import structure

__all__ = ["simplify", "fold_constants", "combine_operators", "cancel_inverses", "fold_powers"]

# (outer, inner) unary pairs with outer(inner(y)) == y for every real y. Not exp(log(y))
# (y > 0 only), not sqrt(square(y)) (= |y|), not square(sqrt(y)) (y >= 0 only).
_INVERSE_PAIRS = (("log", "exp"), ("neg", "neg"))


def node_values(t: Nodes, operators: OperatorSet):
    """The value of every node with variables read as 0 (exact for variable-free subtrees)."""
    L = t.op.shape[0]
    S = L // 2 + 2
    level, _, _ = structure(t.op, operators.arity_table)

    def step(regs, node):
        o, v, lv = node
        slot = jnp.maximum(lv - 1, 0)
        left, right = regs[slot], regs[jnp.minimum(lv, S - 1)]
        leaf = jnp.where(o == CONST, v, 0.0)
        value = jnp.where(o <= CONST, leaf, apply_operators(operators, o, left, right))
        regs = regs.at[slot].set(jnp.where(o != PAD, value, left))
        return regs, value

    _, values = jax.lax.scan(step, jnp.zeros((S,), t.val.dtype), (t.op, t.val, level))
    return values


def _compact(t: Nodes, keep, op, arg, val) -> Nodes:
    L = t.op.shape[0]
    dest = jnp.where(keep, jnp.cumsum(keep) - 1, L)
    return Nodes(
        jnp.zeros((L,), t.op.dtype).at[dest].set(op, mode="drop"),
        jnp.zeros((L,), t.arg.dtype).at[dest].set(arg, mode="drop"),
        jnp.zeros((L,), t.val.dtype).at[dest].set(val, mode="drop"),
        keep.sum().astype(t.n.dtype),
    )


def fold_constants(t: Nodes, operators: OperatorSet) -> Nodes:
    """Replace every maximal variable-free operator subtree by one constant."""
    L = t.op.shape[0]
    pos = jnp.arange(L)
    real = pos < t.n
    arity = jnp.asarray(operators.arity_table)[t.op]
    _, start, _ = structure(t.op, operators.arity_table)
    nvar = jnp.cumsum(t.op == VAR)
    before = jnp.where(start > 0, nvar[jnp.maximum(start - 1, 0)], 0)
    const_sub = real & (arity > 0) & (nvar - before == 0)
    inside = (const_sub[None, :] & (start[None, :] <= pos[:, None]) & (pos[:, None] < pos[None, :])).any(1)
    root = const_sub & ~inside
    values = node_values(t, operators)
    op = jnp.where(root, CONST, t.op)
    arg = jnp.where(root, 0, t.arg)
    val = jnp.where(root, values, t.val)
    return _compact(t, real & ~inside, op, arg, val)


def combine_operators(t: Nodes, operators: OperatorSet) -> Nodes:
    """One rewrite `(Y op c1) op c2 -> Y op (c1 op c2)` for `op` in {+, *}, if any applies."""
    codes = [operators.opcode(n) for n in ("+", "*") if n in operators]
    if not codes:
        return t
    L = t.op.shape[0]
    pos = jnp.arange(L)
    real = pos < t.n
    _, start, _ = structure(t.op, operators.arity_table)
    right = jnp.maximum(pos - 1, 0)
    left = jnp.maximum(start[right] - 1, 0)
    assoc = jnp.isin(t.op, jnp.array(codes)) & real
    is_c = t.op == CONST
    # outer node i: one child a constant, the other child the same operator with a constant child
    inner = jnp.where(is_c[right], left, right)
    outer_c = jnp.where(is_c[right], right, left)
    inner_ok = (is_c[right] | is_c[left]) & (t.op[inner] == t.op) & assoc
    in_r = jnp.maximum(inner - 1, 0)
    in_l = jnp.maximum(start[in_r] - 1, 0)
    inner_c = jnp.where(is_c[in_r], in_r, in_l)
    y_is_right = ~is_c[in_r]
    match = inner_ok & (is_c[in_r] | is_c[in_l])
    i = jnp.argmax(match)
    found = match.any()
    c1, c2 = t.val[outer_c[i]], t.val[inner_c[i]]
    plus = t.op[i] == (codes[0] if "+" in operators else -1)
    combined = jnp.where(plus, c1 + c2, c1 * c2)
    y_start = jnp.where(y_is_right[i], start[in_r[i]], start[in_l[i]])
    y_end = jnp.where(y_is_right[i], in_r[i], in_l[i])
    buf = Nodes(jnp.array([CONST], t.op.dtype), jnp.zeros((1,), t.arg.dtype),
                combined[None].astype(t.val.dtype), jnp.int32(1))
    src = Nodes(*(jnp.concatenate([a, b]) for a, b in zip(t[:3], buf[:3])), t.n)
    s = start[i]
    out, _ = assemble(src, [0, y_start, L, i, i + 1], [s, y_end - y_start + 1, 1, 1, t.n - i - 1], L)
    return jax.tree.map(lambda a, b: jnp.where(found, a, b), out, t)


def cancel_inverses(t: Nodes, operators: OperatorSet) -> Nodes:
    """Remove the first `outer(inner(Y))` pair of `_INVERSE_PAIRS`, if any, leaving `Y`.

    A unary node at position i has its argument's root at i - 1 (postfix), so the
    rewrite drops those two nodes; constants keep their order.
    """
    pairs = [(operators.opcode(a), operators.opcode(b)) for a, b in _INVERSE_PAIRS
             if a in operators and b in operators]
    if not pairs:
        return t
    L = t.op.shape[0]
    pos = jnp.arange(L)
    real = pos < t.n
    child = t.op[jnp.maximum(pos - 1, 0)]
    match = real & (pos > 0)
    match = match & jnp.stack([(t.op == a) & (child == b) for a, b in pairs]).any(0)
    i = jnp.argmax(match)
    drop = match.any() & ((pos == i) | (pos == i - 1))
    return _compact(t, real & ~drop, t.op, t.arg, t.val)


def _even_integer(x):
    return x == 2.0 * jnp.round(x / 2.0)


def fold_powers(t: Nodes, operators: OperatorSet) -> Nodes:
    """Rewrite the first `(Y ^ a) ^ b` (constant `a`, `b`) into `Y ^ (a·b)`, if any.

    IEEE `pow` makes the two equal wherever `(Y ^ a) ^ b` is finite, except for an even
    integer `a` with `a·b` not an even integer (`(Y ^ 2) ^ 0.5 = |Y|`, not `Y ^ 1`):
    those are left alone. Postfix `Y a ^ b ^` becomes `Y (a·b) ^`: the inner `^` and
    `b` are dropped, and `a`'s slot takes the product.
    """
    if "^" not in operators:
        return t
    pw = operators.opcode("^")
    L = t.op.shape[0]
    pos = jnp.arange(L)
    real = pos < t.n

    def at(k):
        return jnp.maximum(pos - k, 0)

    a, b = t.val[at(3)], t.val[at(1)]
    shape = ((t.op == pw) & (t.op[at(1)] == CONST) & (t.op[at(2)] == pw) & (t.op[at(3)] == CONST)
             & (pos >= 3) & real)
    exact = ~_even_integer(a) | _even_integer(a * b)
    match = shape & exact
    i = jnp.argmax(match)
    found = match.any()
    drop = found & ((pos == i - 1) | (pos == i - 2))
    val = jnp.where(found & (pos == i - 3), a[i] * b[i], t.val)
    return _compact(t, real & ~drop, t.op, t.arg, val)


def simplify(t: Nodes, operators: OperatorSet, passes: int = 2) -> Nodes:
    """Constant folding, then `passes` rounds of cancelling inverse pairs, folding powers
    of powers and combining constants."""
    t = fold_constants(t, operators)
    for _ in range(passes):
        t = combine_operators(fold_powers(cancel_inverses(t, operators), operators), operators)
    return t

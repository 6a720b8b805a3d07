"""PySR's mutations and crossover on one fixed-shape tree, jittable and vmappable.

Inside this module a tree is `Nodes`: left-aligned postfix arrays of length L with
each constant's value stored on its node (`val`), so edits move values along with
nodes. Every structural edit is one primitive, `assemble`: the new tree is a
concatenation of contiguous ranges of the old node sequence (subtrees are contiguous
in postfix) and of a few freshly drawn nodes. A mutation therefore only computes a
list of ranges; `assemble` does the gathers. Each mutation returns the new tree and
a success flag (False when it does not apply, e.g. no constant to perturb, or the
result does not fit).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from ._operators import CONST, FIRST_OP, PAD, VAR, OperatorSet
from ._tree import structure

__all__ = ["Nodes", "MUTATIONS", "to_nodes", "from_nodes", "assemble"]

#: PySR's mutation names, in the order of the weight vector.
MUTATIONS = (
    "mutate_constant",
    "mutate_operator",
    "mutate_feature",
    "swap_operands",
    "rotate_tree",
    "add_node",
    "insert_node",
    "delete_node",
    "simplify",
    "randomize",
    "do_nothing",
    "optimize",
)


class Nodes(NamedTuple):
    """One tree, left-aligned: real nodes at `0 .. n-1`, padding after."""

    op: Int[Array, " L"]
    arg: Int[Array, " L"]
    val: Float[Array, " L"]
    n: Int[Array, ""]


def to_nodes(op, arg, const) -> Nodes:
    """Right-aligned population row -> left-aligned `Nodes` with per-node constants."""
    L = op.shape[0]
    n = (op != PAD).sum()
    val = jnp.where(op == CONST, const[jnp.clip(arg, 0, const.shape[0] - 1)], 0.0)
    arg = jnp.where(op == VAR, arg, 0)
    shift = -(L - n)
    return Nodes(jnp.roll(op, shift), jnp.roll(arg, shift), jnp.roll(val, shift), n)


def from_nodes(nodes: Nodes, nconst: int):
    """`Nodes` -> right-aligned `(op, arg, const)` with canonical constant slots.

    Returns also whether the constants fit in `nconst` slots.
    """
    L = nodes.op.shape[0]
    shift = L - nodes.n
    op, arg, val = (jnp.roll(a, shift) for a in (nodes.op, nodes.arg, nodes.val))
    is_const = op == CONST
    slot = jnp.cumsum(is_const) - 1
    const = jnp.zeros((nconst,), val.dtype).at[jnp.where(is_const, slot, nconst)].set(val, mode="drop")
    arg = jnp.where(is_const, slot, arg)
    fits = is_const.sum() <= nconst
    return op, arg.astype(jnp.int32), const, fits


def assemble(src: Nodes, starts, lengths, L: int) -> tuple[Nodes, Bool[Array, ""]]:
    """Concatenate ranges `src[starts[s] : starts[s] + lengths[s]]` into a new tree.

    `src` may be longer than `L` (old nodes followed by new ones). Returns the new
    left-aligned tree and whether it fits in `L` nodes.
    """
    starts = jnp.asarray(starts)
    lengths = jnp.asarray(lengths)
    cum = jnp.cumsum(lengths)
    total = cum[-1]
    k = jnp.arange(L)
    seg = jnp.clip(jnp.sum(k[:, None] >= cum[None, :], axis=1), 0, lengths.shape[0] - 1)
    idx = starts[seg] + k - (cum[seg] - lengths[seg])
    idx = jnp.clip(idx, 0, src.op.shape[0] - 1)
    valid = k < total
    out = Nodes(
        jnp.where(valid, src.op[idx], PAD),
        jnp.where(valid, src.arg[idx], 0),
        jnp.where(valid, src.val[idx], 0.0),
        jnp.minimum(total, L),
    )
    return out, total <= L


def _concat(a: Nodes, b: Nodes) -> Nodes:
    return Nodes(
        jnp.concatenate([a.op, b.op]),
        jnp.concatenate([a.arg, b.arg]),
        jnp.concatenate([a.val, b.val]),
        a.n,
    )


class Draws(NamedTuple):
    """All the randomness one mutation may use, drawn at once from one key.

    `u`: uniforms for decisions; `pick`: two uniform vectors over node positions, whose
    masked argmax picks a uniformly random node; `z`: standard normals. One draw, not
    a split key per field: under `vmap` every split is a hash loop of its own.
    """

    u: Float[Array, " 8"]
    pick: Float[Array, "2 M"]
    z: Float[Array, " 2"]

    @classmethod
    def make(cls, key, L: int, dtype=jnp.float32) -> Draws:
        v = jax.random.uniform(key, (10 + 2 * L,), dtype)
        # Box-Muller: two standard normals from two uniforms (1 - v is in (0, 1])
        radius = jnp.sqrt(-2.0 * jnp.log1p(-v[8]))
        angle = (2.0 * jnp.pi) * v[9]
        z = jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)]).astype(dtype)
        return cls(v[:8], v[10:].reshape(2, L), z)

    def bern(self, i: int, p=0.5):
        return self.u[i] < p

    def randint(self, i: int, lo, hi):
        """Uniform integer in [lo, hi)."""
        return jnp.clip(lo + jnp.floor(self.u[i] * (hi - lo)), lo, jnp.maximum(hi - 1, lo)).astype(jnp.int32)

    def choose(self, j: int, mask):
        """A uniformly random index where `mask` holds, and whether there was one."""
        m = mask.shape[0]
        return jnp.argmax(jnp.where(mask, self.pick[j, :m], -1.0)), mask.any()


class Context(NamedTuple):
    """What mutations need to know: static options, and the live feature count (an int,
    or a traced scalar when the data is padded to a feature bucket)."""

    operators: OperatorSet
    n_features: int | Int[Array, ""]
    nconst: int
    perturbation_factor: float
    probability_negate_constant: float


def _random_leaf(r: Draws, i: int, ctx: Context, dtype):
    """A fresh leaf from `r.u[i]`, `r.u[i + 1]`, `r.z[i // 2]`: constant or variable, 50/50."""
    is_const = r.bern(i)
    op = jnp.where(is_const, CONST, VAR)
    arg = jnp.where(is_const, 0, r.randint(i + 1, 0, ctx.n_features))
    val = jnp.where(is_const, r.z[(i // 2) % 2].astype(dtype), 0.0)
    return op, arg, val


def _random_op(r: Draws, i: int, ctx: Context):
    """A uniformly random operator and its arity."""
    ops = ctx.operators
    op = FIRST_OP + r.randint(i, 0, len(ops))
    return op, jnp.asarray(ops.arity_table)[op]


def _new_nodes(r: Draws, ctx: Context, dtype) -> tuple[Nodes, Array, Array]:
    """The fresh nodes every structural mutation shares: leaf `r.u[0:2], r.z[0]`, leaf
    `r.u[2:4], r.z[1]`, then operator `r.u[4]`; returns them, the operator and its arity."""
    made = [_random_leaf(r, 2 * i, ctx, dtype) for i in range(2)]
    op, arity = _random_op(r, 4, ctx)
    buf = Nodes(
        jnp.stack([m[0] for m in made] + [op]).astype(jnp.int32),
        jnp.stack([m[1] for m in made] + [jnp.int32(0)]).astype(jnp.int32),
        jnp.stack([m[2] for m in made] + [jnp.zeros((), dtype)]).astype(dtype),
        jnp.int32(3),
    )
    return buf, op, arity


# ------------------------------------------------------------------------------ mutations


def constant_scale(u, up, negate, perturbation_factor, temperature):
    """PySR's `mutate_constant` factor: `(pf·T + 1.1)^u`, inverted unless `up`, negated if
    `negate` (PySR's docstring: with probability `probability_negate_constant`)."""
    max_change = perturbation_factor * temperature + 1.1
    factor = max_change ** u
    factor = jnp.where(up, factor, 1.0 / factor)
    return factor * jnp.where(negate, -1.0, 1.0)


def mutate_constant(r: Draws, t: Nodes, ctx: Context, temperature):
    i, any_const = r.choose(0, t.op == CONST)
    scale = constant_scale(r.u[0].astype(t.val.dtype), r.bern(1),
                           r.bern(2, ctx.probability_negate_constant), ctx.perturbation_factor,
                           temperature)
    val = t.val.at[i].multiply(scale)
    return t._replace(val=val), any_const


def mutate_operator(r: Draws, t: Nodes, ctx: Context, temperature):
    arity_table = jnp.asarray(ctx.operators.arity_table)
    i, found = r.choose(0, t.op >= FIRST_OP)
    arity = arity_table[t.op[i]]
    codes = jnp.arange(FIRST_OP, ctx.operators.num_opcodes)
    same = (arity_table[codes] == arity) & (codes != t.op[i])
    # a uniform choice among the other operators of the same arity
    j = jnp.argmax(jnp.where(same, r.pick[1, : codes.shape[0]], -1.0))
    return t._replace(op=t.op.at[i].set(codes[j].astype(t.op.dtype))), found & same.any()


def mutate_feature(r: Draws, t: Nodes, ctx: Context, temperature):
    i, found = r.choose(0, t.op == VAR)
    ok = found & (ctx.n_features > 1)
    # a different feature, uniformly (no change, and a failed mutation, with one feature)
    new = r.randint(0, 0, jnp.maximum(ctx.n_features - 1, 1))
    new = jnp.where(new >= t.arg[i], new + 1, new)
    return t._replace(arg=jnp.where(ok, t.arg.at[i].set(new), t.arg)), ok


def _children(start, i):
    """Ranges of the (left, right) children of a binary node at `i`."""
    right_start = start[jnp.maximum(i - 1, 0)]
    return (start[i], right_start - start[i]), (right_start, i - right_start)


SEGMENTS = 8  # rotate_tree needs the most ranges


class Plan(NamedTuple):
    """A structural edit as `assemble` ranges over the tree followed by its three fresh
    nodes (`_new_nodes`), padded to `SEGMENTS` ranges; `found` is False when it cannot
    apply."""

    starts: Int[Array, " SEGMENTS"]
    lengths: Int[Array, " SEGMENTS"]
    found: Bool[Array, ""]

    @classmethod
    def make(cls, starts, lengths, found=True) -> Plan:
        def pad(x):  # empty ranges after the plan's own
            x = jnp.asarray(x, jnp.int32)
            return jnp.pad(x, (0, SEGMENTS - x.shape[0]))

        return cls(pad(starts), pad(lengths), jnp.asarray(found, bool))


def _keep(t: Nodes) -> Plan:
    return Plan.make([0], [t.n])


def swap_operands(r: Draws, t: Nodes, start, ctx: Context) -> Plan:
    arity = jnp.asarray(ctx.operators.arity_table)[t.op]
    i, found = r.choose(0, arity == 2)
    (ls, ll), (rs, rl) = _children(start, i)
    return Plan.make([0, rs, ls, i], [ls, rl, ll, t.n - i], found)


def rotate_tree(r: Draws, t: Nodes, start, ctx: Context) -> Plan:
    """R(.., P(.., g, ..), ..) -> P(.., R(.., g, ..), ..), as PySR's `randomly_rotate_tree!`."""
    arity = jnp.asarray(ctx.operators.arity_table)[t.op]
    L = t.op.shape[0]
    pos = jnp.arange(L)
    real = pos < t.n
    is_op = (arity > 0) & real
    right_child = jnp.maximum(pos - 1, 0)
    left_child = jnp.maximum(start[right_child] - 1, 0)
    right_is_op = is_op & is_op[right_child]
    left_is_op = (arity == 2) & is_op & is_op[left_child]
    rr, found = r.choose(0, right_is_op | left_is_op)
    # pivot: the right/only child (index arity-1) or the left child (index 0) of R
    use_left = jnp.where(right_is_op[rr] & left_is_op[rr], r.bern(0), left_is_op[rr] & ~right_is_op[rr])
    p = jnp.where(use_left, left_child[rr], right_child[rr])
    g_idx = r.randint(1, 0, jnp.maximum(arity[p], 1))

    def child_ranges(i):
        # (first, second) child ranges of node i; for unary the child is "first".
        (ls, ll), (rs, rl) = _children(start, i)
        unary = arity[i] == 1
        first = (jnp.where(unary, start[i], ls), jnp.where(unary, i - start[i], ll))
        second = (jnp.where(unary, 0, rs), jnp.where(unary, 0, rl))
        return first, second

    (r1s, r1l), (r2s, r2l) = child_ranges(rr)
    (p1s, p1l), (p2s, p2l) = child_ranges(p)
    pivot_first = (arity[rr] == 1) | use_left  # P is R's first child
    g_first = g_idx == 0
    gs, gl = jnp.where(g_first, p1s, p2s), jnp.where(g_first, p1l, p2l)
    # R' = [R-first or g] [R-second or g] R ; P' = [P-first or R'] [P-second or R'] P
    rb = (jnp.where(pivot_first, gs, r1s), jnp.where(pivot_first, gl, r1l))
    ra = (jnp.where(pivot_first, r2s, gs), jnp.where(pivot_first, r2l, gl))
    pb_s, pb_l = jnp.where(g_first, 0, p1s), jnp.where(g_first, 0, p1l)
    pa_s, pa_l = jnp.where(g_first, p2s, 0), jnp.where(g_first, p2l, 0)
    s0 = start[rr]
    starts = [0, pb_s, rb[0], ra[0], rr, pa_s, p, rr + 1]
    lengths = [s0, pb_l, rb[1], ra[1], 1, pa_l, 1, t.n - rr - 1]
    return Plan.make(starts, lengths, found)


def add_node(r: Draws, t: Nodes, ctx: Context, arity) -> Plan:
    """Append (replace a random leaf by the fresh operator over fresh leaves) or prepend
    (the fresh operator as a new root over the tree and a fresh leaf), 50/50."""
    L = t.op.shape[0]
    do_append, tree_left = r.bern(5), r.bern(6)
    # append: leaf j -> op(new leaves): [0, j) + leaves + op + (j, n)
    arity_all = jnp.asarray(ctx.operators.arity_table)[t.op]
    j, _ = r.choose(0, (arity_all == 0) & (jnp.arange(L) < t.n))
    # prepend: op(tree, leaf) / op(leaf, tree) / op(tree): [0, n) and one fresh leaf, then op
    leaf_len = jnp.where(arity == 2, 1, 0)
    first_s = jnp.where(tree_left, 0, L)
    first_l = jnp.where(tree_left, t.n, leaf_len)
    second_s = jnp.where(tree_left, L, 0)
    second_l = jnp.where(tree_left, leaf_len, t.n)
    starts = jnp.where(do_append, jnp.stack([0, L + 2 - arity, L + 2, j + 1]),
                       jnp.stack([first_s, second_s, L + 2, 0]))
    lengths = jnp.where(do_append, jnp.stack([j, arity, 1, t.n - j - 1]),
                        jnp.stack([first_l, second_l, 1, 0]))
    return Plan.make(starts, lengths)


def insert_node(r: Draws, t: Nodes, start, ctx: Context, arity) -> Plan:
    """A random node becomes a child of the fresh operator (PySR's `insert_random_op`),
    beside the first fresh leaf when the operator is binary."""
    L = t.op.shape[0]
    i, _ = r.choose(0, jnp.arange(L) < t.n)
    s = start[i]
    sub_first = r.bern(5) | (arity == 1)
    leaf_len = jnp.where(arity == 2, 1, 0)
    starts = [0, jnp.where(sub_first, s, L), jnp.where(sub_first, L, s), L + 2, i + 1]
    lengths = [
        s,
        jnp.where(sub_first, i - s + 1, leaf_len),
        jnp.where(sub_first, leaf_len, i - s + 1),
        1,
        t.n - i - 1,
    ]
    return Plan.make(starts, lengths)


def delete_node(r: Draws, t: Nodes, start, ctx: Context) -> Plan:
    """A random node is replaced by one of its children, a leaf by the second fresh leaf."""
    L = t.op.shape[0]
    arity = jnp.asarray(ctx.operators.arity_table)[t.op]
    i, _ = r.choose(0, jnp.arange(L) < t.n)
    (ls, ll), (rs, rl) = _children(start, i)
    keep_left = r.bern(5)
    cs = jnp.select([arity[i] == 0, arity[i] == 1, keep_left], [L + 1, start[i], ls], rs)
    cl = jnp.select([arity[i] == 0, arity[i] == 1, keep_left], [1, i - start[i], ll], rl)
    return Plan.make([0, cs, i + 1], [start[i], cl, t.n - i - 1])


def crossover(key, a: Nodes, b: Nodes, ctx: Context):
    """Swap a random subtree of `a` with a random subtree of `b`: two children."""
    L = a.op.shape[0]
    pick = jax.random.uniform(key, (2, L))
    _, sa, _ = structure(a.op, ctx.operators.arity_table)
    _, sb, _ = structure(b.op, ctx.operators.arity_table)
    i = jnp.argmax(jnp.where(jnp.arange(L) < a.n, pick[0], -1.0))
    j = jnp.argmax(jnp.where(jnp.arange(L) < b.n, pick[1], -1.0))
    src_ab = _concat(a, b)
    src_ba = _concat(b, a)
    c1, f1 = assemble(src_ab, [0, L + sb[j], i + 1], [sa[i], j - sb[j] + 1, a.n - i - 1], L)
    c2, f2 = assemble(src_ba, [0, L + sa[i], j + 1], [sb[j], i - sa[i] + 1, b.n - j - 1], L)
    return c1, c2, f1 & f2


# ------------------------------------------------------------------------------ dispatch


def mutate(key, kind, t: Nodes, ctx: Context, temperature, curmaxsize):
    """Apply mutation number `kind` (index into `MUTATIONS`).

    Under `vmap` a switch over the mutations computes every branch, so each is made
    cheap: the point edits (constant, operator, feature) change one node, and every
    structural edit is only a `Plan` of ranges, so one `assemble` builds the child
    whichever mutation was chosen.

    `simplify` and `optimize` leave the tree as it is here: every member is simplified
    (`should_simplify`) and a fraction has its constants fitted (`optimize_probability`)
    at the end of each iteration, which is where PySR spends that effort too. Nor does
    `randomize`: the search draws the (rare) random trees in a small batch of their own,
    since a vmapped switch would run the generator for every event.
    """
    r = Draws.make(key, max(t.op.shape[0], len(ctx.operators)), t.val.dtype)
    L = t.op.shape[0]
    _, start, _ = structure(t.op, ctx.operators.arity_table)
    fresh, _, arity = _new_nodes(r, ctx, t.val.dtype)  # at L .. L + 2, after the tree
    c, c_ok = mutate_constant(r, t, ctx, temperature)
    o, o_ok = mutate_operator(r, t, ctx, temperature)
    f, f_ok = mutate_feature(r, t, ctx, temperature)
    keep = _keep(t)
    plans = [
        keep._replace(found=c_ok),
        keep._replace(found=o_ok),
        keep._replace(found=f_ok),
        swap_operands(r, t, start, ctx),
        rotate_tree(r, t, start, ctx),
        add_node(r, t, ctx, arity),
        insert_node(r, t, start, ctx, arity),
        delete_node(r, t, start, ctx),
        keep,  # simplify
        keep,  # randomize: see `_search._randomized`
        keep,  # do_nothing
        keep,  # optimize
    ]
    plan = jax.tree.map(lambda *x: jnp.stack(x)[kind], *plans)
    edited = Nodes(jnp.where(kind == MUTATIONS.index("mutate_operator"), o.op, t.op),
                   jnp.where(kind == MUTATIONS.index("mutate_feature"), f.arg, t.arg),
                   jnp.where(kind == MUTATIONS.index("mutate_constant"), c.val, t.val), t.n)
    out, fits = assemble(_concat(edited, fresh), plan.starts, plan.lengths, L)
    return out, plan.found & fits


def applicable(t: Nodes, ctx: Context, curmaxsize, size_limit_hit) -> Bool[Array, " mutations"]:
    """Which mutations can apply to `t` (PySR's `condition_mutation_weights!`)."""
    arity = jnp.asarray(ctx.operators.arity_table)[t.op]
    real = jnp.arange(t.op.shape[0]) < t.n
    has_op = ((arity > 0) & real).any()
    has_const = ((t.op == CONST) & real).any()
    has_binary = ((arity == 2) & real).any()
    has_var = ((t.op == VAR) & real).any()
    grow = ~size_limit_hit
    return jnp.array([
        has_const,
        has_op,
        has_var & (ctx.n_features > 1),
        has_binary,
        has_op,
        grow,
        grow,
        jnp.bool_(True),
        has_op,
        jnp.bool_(True),
        jnp.bool_(True),
        has_const,
    ])


def constant_weight_scale(t: Nodes) -> Float[Array, ""]:
    """PySR scales `mutate_constant`'s weight by min(8, n_constants) / 8."""
    return jnp.minimum(8, (t.op == CONST).sum()) / 8.0



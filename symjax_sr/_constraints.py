"""Size, depth, complexity and operator constraints of a tree, checked inside jit.

`constraints` (PySR): the complexity of each argument of an operator is bounded;
`nested_constraints` (PySR): how many times `inner` may nest inside `outer`,
counted as SymbolicRegression.jl's `count_max_nestedness` does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ._complexity import mapped_complexity
from ._mutate import Nodes
from ._operators import CONST, PAD, VAR
from ._options import SearchOptions
from ._tree import structure

__all__ = ["node_costs", "node_complexity", "tree_complexity", "satisfies"]


def _tables(opts: SearchOptions):
    if opts.complexities is None:
        per_op = (0.0, 1.0, 1.0) + tuple(o.complexity for o in opts.operators.operators)
        return jnp.asarray(per_op, jnp.float32), jnp.ones((opts.n_features,), jnp.float32), 1.0
    per_op, per_var, const = opts.complexities
    return jnp.asarray(per_op, jnp.float32), jnp.asarray(per_var, jnp.float32), const


def node_costs(op, arg, opts: SearchOptions):
    """Complexity of each node (0 for padding); any shape, any alignment."""
    per_op, per_var, const = _tables(opts)
    c = jnp.where(op == VAR, per_var[jnp.clip(arg, 0, opts.n_features - 1)], per_op[op])
    c = jnp.where(op == CONST, const, c)
    return jnp.where(op == PAD, 0.0, c)


def node_complexity(t: Nodes, opts: SearchOptions) -> Float[Array, " L"]:
    return jnp.where(jnp.arange(t.op.shape[0]) >= t.n, 0.0, node_costs(t.op, t.arg, opts))


def tree_complexity(t: Nodes, opts: SearchOptions) -> Float[Array, ""]:
    """PySR's complexity (rounded to an integer, as its hall of fame indexes it), or the
    `complexity_mapping`'s."""
    if opts.complexity_mapping is not None:
        shift = t.op.shape[0] - t.n
        op, arg = jnp.roll(t.op, shift), jnp.roll(t.arg, shift)
        return mapped_complexity(opts.complexity_mapping, op[None], arg[None], opts.operators)[0]
    return jnp.round(node_complexity(t, opts).sum())


def _nestedness(t: Nodes, opts: SearchOptions, start):
    pairs = opts.nested_constraints
    outer = jnp.array([p[0] for p in pairs])
    inner = jnp.array([p[1] for p in pairs])
    limit = jnp.array([p[2] for p in pairs])
    arity = jnp.asarray(opts.operators.arity_table)[t.op]
    L = t.op.shape[0]

    def step(cnt, i):
        right = jnp.maximum(i - 1, 0)
        left = jnp.maximum(start[right] - 1, 0)
        child = jnp.where(arity[i] >= 1, cnt[:, right], 0)
        child = jnp.maximum(child, jnp.where(arity[i] == 2, cnt[:, left], 0))
        here = (t.op[i] == inner).astype(jnp.int32) + child
        bad = (t.op[i] == outer) & (child > limit)
        return cnt.at[:, i].set(here), bad.any()

    _, bad = jax.lax.scan(step, jnp.zeros((len(pairs), L), jnp.int32), jnp.arange(L))
    return ~bad.any()


def satisfies(t: Nodes, opts: SearchOptions, curmaxsize, nconst_ok) -> Bool[Array, ""]:
    """All of PySR's `check_constraints` for one tree, plus the constant-table limit."""
    ok = (t.n >= 1) & nconst_ok & (tree_complexity(t, opts) <= curmaxsize)
    need_structure = opts.maxdepth is not None or opts.constraints or opts.nested_constraints
    if not need_structure:
        return ok
    _, start, depth = structure(t.op, opts.operators.arity_table)
    if opts.maxdepth is not None:
        ok &= depth.max() <= opts.maxdepth
    if opts.constraints:
        c = node_complexity(t, opts)
        cum = jnp.cumsum(c)
        sub = cum - jnp.where(start > 0, cum[jnp.maximum(start - 1, 0)], 0.0)
        pos = jnp.arange(t.op.shape[0])
        right = jnp.maximum(pos - 1, 0)
        left = jnp.maximum(start[right] - 1, 0)
        arity = jnp.asarray(opts.operators.arity_table)[t.op]
        for code, max_left, max_right in opts.constraints:
            here = t.op == code
            if max_left >= 0:
                first = jnp.where(arity == 2, sub[left], sub[right])
                ok &= ~(here & (first > max_left)).any()
            if max_right >= 0:
                ok &= ~(here & (arity == 2) & (sub[right] > max_right)).any()
    if opts.nested_constraints:
        ok &= _nestedness(t, opts, start)
    return ok

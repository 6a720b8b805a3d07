"""Mutations, crossover, simplification and constraints against host-side references.

The references here are independent of `symjax_sr._mutate`/`_constraints`: trees are
rebuilt as nested Python tuples and PySR's `check_constraints` (SymbolicRegression.jl,
`CheckConstraints.jl`) is re-implemented recursively on them.
"""

from __future__ import annotations

import collections
import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _strategies import trees
from hypothesis import assume, given
from hypothesis import strategies as st

from symjax_sr import (
    Complexities,
    Tree,
    make_operator_set,
    parse_expression,
    stack_trees,
    tree_to_string,
)
from symjax_sr._constraints import satisfies, tree_complexity
from symjax_sr._mutate import MUTATIONS, Context, Nodes, crossover, from_nodes, mutate, to_nodes
from symjax_sr._numpy_eval import evaluate_tree_numpy
from symjax_sr._operators import CONST, VAR
from symjax_sr._options import SearchOptions
from symjax_sr._simplify import (
    cancel_inverses,
    combine_operators,
    fold_constants,
    fold_powers,
    simplify,
)

OPS = make_operator_set(["+", "-", "*", "/"], ["sin", "cos", "exp"])
F = 3
L = 16
K = 8
CODE = {name: OPS.opcode(name) for name in OPS.names}

#: No constraints, unit complexities: the search's fast path (complexity only).
PLAIN = SearchOptions(operators=OPS, n_features=F, maxsize=L, nconst=K)

_CX = Complexities.make(OPS, F, {"/": 2, "exp": 2, "cos": 1.5}, 1.0, (1.0, 1.0, 2.0))
#: Depth limit, per-operator argument limits, nesting limits, non-unit complexities.
CONSTRAINED = SearchOptions(
    operators=OPS, n_features=F, maxsize=L, nconst=K, maxdepth=6,
    complexities=(_CX.operators, _CX.variables, _CX.constant),
    constraints=((CODE["/"], -1, 3), (CODE["*"], 5, 4), (CODE["exp"], 3, -1), (CODE["sin"], 4, -1)),
    nested_constraints=(
        (CODE["sin"], CODE["sin"], 0), (CODE["sin"], CODE["cos"], 0), (CODE["exp"], CODE["exp"], 0),
        (CODE["cos"], CODE["sin"], 1), (CODE["/"], CODE["/"], 1),
    ),
)
_UNIT = Complexities.make(OPS, F)


#: `mutate` took the in-loop simplifier as an argument in its first version.
_TAKES_SIMPLIFY = "simplify_fn" in inspect.signature(mutate).parameters


def _mutate(key, kind, t, ctx, temperature, curmaxsize):
    if _TAKES_SIMPLIFY:
        return mutate(key, kind, t, ctx, temperature, curmaxsize, lambda u: simplify(u, OPS))
    return mutate(key, kind, t, ctx, temperature, curmaxsize)


def _ctx(opts: SearchOptions, pf=0.129, pneg=0.00743) -> Context:
    return Context(OPS, F, opts.const_slots, pf, pneg)


# ------------------------------------------------------------------------------ host helpers


def to_dev(tree: Tree) -> Nodes:
    pop = stack_trees([tree], L, L, np.float32)
    return to_nodes(pop.op[0], pop.arg[0], pop.const[0])


def to_host(t: Nodes, i=None) -> Tree:
    """Left-aligned `Nodes` (optionally row `i` of a stack) -> host `Tree`."""
    op, arg, val, n = (np.asarray(a if i is None else a[i]) for a in t)
    n = int(n)
    op, arg, val = op[:n], arg[:n], val[:n]
    return Tree(op, np.where(op == VAR, arg, 0), np.where(op == CONST, val, 0.0).astype(np.float32))


def nested(tree: Tree):
    """Postfix -> nested `(op, arg, value, children)` tuples."""
    stack = []
    for o, a, v in zip(tree.op.tolist(), tree.arg.tolist(), tree.value.tolist(), strict=True):
        k = int(OPS.arity_table[o])
        children = tuple(stack[len(stack) - k:]) if k else ()
        del stack[len(stack) - k:]
        stack.append((o, a, v, children))
    (root,) = stack
    return root


def walk(node):
    yield node
    for c in node[3]:
        yield from walk(c)


def complexity(node, cx: Complexities) -> float:
    o, a, _, ch = node
    own = cx.variables[a] if o == VAR else cx.constant if o == CONST else cx.operators[o]
    return own + sum(complexity(c, cx) for c in ch)


def depth(node) -> int:
    return 1 + max((depth(c) for c in node[3]), default=0)


def max_nestedness(node, code) -> int:
    """SymbolicRegression.jl's `count_max_nestedness`, minus the count of the node itself."""

    def count(n):
        return (n[0] == code) + max((count(c) for c in n[3]), default=0)

    return count(node) - (node[0] == code)


def check_constraints(tree: Tree, opts: SearchOptions, maxsize: float, cx: Complexities) -> bool:
    """PySR's `check_constraints`, recursively on the nested tree."""
    root = nested(tree)
    if round(complexity(root, cx)) > maxsize:
        return False
    if depth(root) > (opts.maxdepth or opts.maxsize):
        return False
    for node in walk(root):
        for code, max_left, max_right in opts.constraints:
            if node[0] != code:
                continue
            args = node[3]
            if max_left >= 0 and complexity(args[0], cx) > max_left:
                return False
            if len(args) == 2 and max_right >= 0 and complexity(args[1], cx) > max_right:
                return False
        for outer, inner, limit in opts.nested_constraints:
            if node[0] == outer and max_nestedness(node, inner) > limit:
                return False
    return True


def multiset(tree: Tree):
    return collections.Counter(zip(tree.op.tolist(), tree.arg.tolist(), tree.value.tolist(), strict=True))


def _cx_of(opts):
    return _UNIT if opts.complexities is None else _CX


# ------------------------------------------------------------- sequences of search edits

STEPS = 6


@functools.partial(jax.jit, static_argnames=("opts",))
def _sequence(key, t0: Nodes, partners: Nodes, kinds, is_cx, temps, curmaxsize, opts):
    """Mutate/cross over `t0` STEPS times, keeping a child only when the search would
    (fits, constant table fits, `satisfies`), exactly like `_search._finish`."""
    ctx = _ctx(opts)

    def check(t, fits):
        _, _, _, nconst_ok = from_nodes(t, opts.const_slots)
        ok = fits & satisfies(t, opts, curmaxsize, nconst_ok)
        return ok, satisfies(t, opts, curmaxsize, True), nconst_ok, tree_complexity(t, opts)

    def step(t, inp):
        k, kind, cx, temp, b = inp
        m, m_fits = _mutate(k, kind, t, ctx, temp, curmaxsize)
        c1, c2, c_fits = crossover(k, t, b, ctx)
        child = jax.tree.map(lambda x, y: jnp.where(cx, x, y), c1, m)
        fits = jnp.where(cx, c_fits, m_fits)
        ok1, sat1, nc1, cplx1 = check(child, fits)
        ok2, sat2, nc2, cplx2 = check(c2, c_fits)
        keep = jnp.where(cx, ok1 & ok2, ok1)
        new = jax.tree.map(lambda x, y: jnp.where(keep, x, y), child, t)
        out = dict(parent=t, child=child, other=c2, partner=b, fits=fits, c_fits=c_fits,
                   sat=jnp.stack([sat1, sat2]), nc=jnp.stack([nc1, nc2]),
                   cplx=jnp.stack([cplx1, cplx2]), keep=keep)
        return new, out

    keys = jax.random.split(key, STEPS)
    final, outs = jax.lax.scan(step, t0, (keys, kinds, is_cx, temps, partners))
    return final, outs


def _host_valid(tree: Tree):
    tree.validate(OPS, F)
    assert tree.size <= L


def _check_candidate(tree: Tree, sat, cplx, opts, curmaxsize):
    _host_valid(tree)
    cx = _cx_of(opts)
    assert cplx == round(cx.of_tree(tree)) == round(complexity(nested(tree), cx))
    assert bool(sat) == check_constraints(tree, opts, curmaxsize, cx), (
        f"satisfies={bool(sat)} disagrees with the host check on {tree}"
    )


small_trees = trees(OPS, n_features=F, max_leaves=5)
mutation_kinds = st.sampled_from(range(len(MUTATIONS)))


@pytest.mark.parametrize("opts", [PLAIN, CONSTRAINED], ids=["plain", "constrained"])
@given(
    start=small_trees,
    partners=st.lists(small_trees, min_size=STEPS, max_size=STEPS),
    kinds=st.lists(mutation_kinds, min_size=STEPS, max_size=STEPS),
    is_cx=st.lists(st.booleans(), min_size=STEPS, max_size=STEPS),
    temps=st.lists(st.floats(0, 1), min_size=STEPS, max_size=STEPS),
    curmaxsize=st.integers(3, L),
    seed=st.integers(0, 2**31 - 1),
)
def test_edit_sequences_keep_trees_valid(opts, start, partners, kinds, is_cx, temps, curmaxsize, seed):
    assume(start.size <= L and all(p.size <= L for p in partners))
    t0 = to_dev(start)
    pstack = jax.tree.map(lambda *xs: jnp.stack(xs), *[to_dev(p) for p in partners])
    final, outs = _sequence(
        jax.random.key(seed), t0, pstack, jnp.asarray(kinds, jnp.int32), jnp.asarray(is_cx),
        jnp.asarray(temps, jnp.float32), jnp.int32(curmaxsize), opts=opts,
    )
    outs = jax.device_get(outs)
    cx = _cx_of(opts)
    for s in range(STEPS):
        parent, child = to_host(outs["parent"], s), None
        if outs["fits"][s]:
            child = to_host(outs["child"], s)
            _check_candidate(child, outs["sat"][s][0], outs["cplx"][s][0], opts, curmaxsize)
        if is_cx[s] and outs["c_fits"][s]:
            other = to_host(outs["other"], s)
            _check_candidate(other, outs["sat"][s][1], outs["cplx"][s][1], opts, curmaxsize)
            partner = to_host(outs["partner"], s)
            # crossover swaps two subtrees: the node count is conserved
            assert child.size + other.size == parent.size + partner.size
            assert multiset(child) + multiset(other) == multiset(parent) + multiset(partner)
        if outs["keep"][s]:
            assert check_constraints(child, opts, curmaxsize, cx)
            assert outs["nc"][s][0]
            assert (child.op == CONST).sum() <= opts.const_slots
        if child is not None and not is_cx[s]:
            name = MUTATIONS[kinds[s]]
            if name in ("swap_operands", "rotate_tree", "mutate_constant", "do_nothing", "optimize"):
                assert child.size == parent.size
            if name in ("swap_operands", "rotate_tree", "do_nothing", "optimize"):
                assert multiset(child) == multiset(parent), name
    last = to_host(final)
    _host_valid(last)
    if any(outs["keep"]):
        assert check_constraints(last, opts, curmaxsize, cx)


# --------------------------------------------------------- each mutation on a known tree


@functools.partial(jax.jit, static_argnames=("kind", "pf", "pneg"))
def _mutate_many(keys, t: Nodes, kind: int, temperature, pf=0.129, pneg=0.00743):
    ctx = _ctx(PLAIN, pf, pneg)
    return jax.vmap(
        lambda k: _mutate(k, kind, t, ctx, temperature, jnp.int32(L))
    )(keys)


def _outcomes(expr: str, kind: str, n=64, temperature=1.0, **kw):
    tree = parse_expression(expr, OPS, dtype=np.float32)
    keys = jax.random.split(jax.random.key(7), n)
    out, ok = jax.device_get(_mutate_many(keys, to_dev(tree), MUTATIONS.index(kind),
                                          jnp.float32(temperature), **kw))
    return tree, [to_host(out, i) for i in range(n)], np.asarray(ok)


def _s(tree: Tree) -> str:
    from symjax_sr import tree_to_string

    return tree_to_string(tree, OPS)


def test_rotate_tree_on_product_of_sum():
    # R = *, pivot P = + (its left child), grandchild g = x0 or x1:
    # ((x0 + x1) * x2) -> ((x0 * x2) + x1) or (x0 + (x1 * x2))
    _, outs, ok = _outcomes("(x0 + x1) * x2", "rotate_tree")
    assert ok.all()
    assert {_s(t) for t in outs} == {"((x0 * x2) + x1)", "(x0 + (x1 * x2))"}


def test_rotate_tree_with_unary_pivot_and_root():
    # only the root's operator child can pivot: sin(cos(x0)) has pivots sin -> cos
    _, outs, ok = _outcomes("sin(cos(x0))", "rotate_tree")
    assert ok.all()
    assert {_s(t) for t in outs} == {"cos(sin(x0))"}
    # x1 * sin(x0): R = *, P = sin (right child), g = x0 -> sin(x1 * x0)
    _, outs, ok = _outcomes("x1 * sin(x0)", "rotate_tree")
    assert {_s(t) for t in outs} == {"sin((x1 * x0))"}


def test_rotate_tree_needs_an_operator_child():
    _, _, ok = _outcomes("(x0 + x1)", "rotate_tree", n=8)
    assert not ok.any()


def test_swap_operands():
    _, outs, ok = _outcomes("(x0 - x1) / x2", "swap_operands")
    assert ok.all()
    assert {_s(t) for t in outs} == {"(x2 / (x0 - x1))", "((x1 - x0) / x2)"}
    _, _, ok = _outcomes("sin(x0)", "swap_operands", n=8)
    assert not ok.any()


def test_mutate_operator_keeps_arity():
    tree, outs, ok = _outcomes("sin(x0) + x1", "mutate_operator", n=128)
    assert ok.all()
    got = {_s(t) for t in outs}
    expect = {f"({a} {b} x1)" for a in ("cos(x0)", "exp(x0)") for b in ["+"]}
    expect |= {f"(sin(x0) {b} x1)" for b in ("-", "*", "/")}
    assert got == expect


def test_mutate_feature_changes_one_variable():
    _, outs, ok = _outcomes("x0 * x0", "mutate_feature", n=128)
    assert ok.all()
    assert {_s(t) for t in outs} == {"(x1 * x0)", "(x2 * x0)", "(x0 * x1)", "(x0 * x2)"}


def test_mutate_constant_factor_and_sign():
    tree, outs, ok = _outcomes("x0 * 2.0 + 3.0", "mutate_constant", n=200, temperature=1.0,
                               pf=0.5, pneg=0.0)
    assert ok.all()
    bound = 0.5 * 1.0 + 1.1
    changed = 0
    for t in outs:
        assert np.array_equal(t.op, tree.op)
        a, b = t.constants
        ratio = np.array([a / 2.0, b / 3.0])
        assert (ratio > 0).all()  # pneg = 0: never negated
        assert ((ratio == 1.0).sum()) >= 1  # at most one constant moved
        r = ratio[ratio != 1.0]
        assert ((r <= bound * (1 + 1e-6)) & (r >= 1 / bound * (1 - 1e-6))).all()
        changed += len(r)
    assert changed > 150
    _, outs, _ = _outcomes("x0 * 2.0", "mutate_constant", n=50, pneg=1.0)
    assert all(t.constants[0] < 0 for t in outs)
    _, _, ok = _outcomes("x0 * x1", "mutate_constant", n=8)
    assert not ok.any()


def _is_subsequence(small: Tree, big: Tree) -> bool:
    it = iter(zip(big.op.tolist(), big.arg.tolist(), big.value.tolist(), strict=True))
    return all(any(node == other for other in it)
               for node in zip(small.op.tolist(), small.arg.tolist(), small.value.tolist(), strict=True))


def test_add_node_appends_or_prepends():
    tree, outs, ok = _outcomes("x0 + cos(x1)", "add_node", n=128)
    assert ok.all()
    prepends = appends = 0
    for t in outs:
        _host_valid(t)
        arity = int(OPS.arity_table[t.op[-1]])
        grow = t.size - tree.size
        assert grow in (1, 2)
        root = nested(t)
        old = nested(tree)
        if old in root[3] and grow == arity:
            prepends += 1
        else:
            # one leaf of the old tree became an operator over fresh leaves
            appends += 1
            assert t.size > tree.size
            assert root[0] == old[0]
    assert prepends > 20 and appends > 20


def test_insert_node_wraps_one_subtree():
    tree, outs, ok = _outcomes("x0 * cos(x1)", "insert_node", n=128)
    assert ok.all()
    for t in outs:
        _host_valid(t)
        assert t.size - tree.size in (1, 2)
        assert _is_subsequence(tree, t)
        # some operator node of the result has an old subtree as a child, and the
        # rest is unchanged: removing the new operator and its new leaf gives the old tree
        old_subtrees = set(walk(nested(tree)))
        assert any(
            n[0] >= 3 and any(c in old_subtrees for c in n[3]) and n not in old_subtrees
            for n in walk(nested(t))
        )


def test_delete_node_replaces_a_node_by_a_child():
    tree, outs, ok = _outcomes("sin(x0) * (x1 + x2)", "delete_node", n=128)
    assert ok.all()
    seen = set()
    for t in outs:
        _host_valid(t)
        seen.add(_s(t))
    # deleting the root keeps one side; deleting sin or + keeps one child
    for s in ("sin(x0)", "(x1 + x2)", "(x0 * (x1 + x2))", "(sin(x0) * x1)", "(sin(x0) * x2)"):
        assert s in seen


def test_crossover_swaps_subtrees():
    a = parse_expression("x0 + sin(x1)", OPS, dtype=np.float32)
    b = parse_expression("x2 * 2.0", OPS, dtype=np.float32)
    ctx = _ctx(PLAIN)
    keys = jax.random.split(jax.random.key(3), 64)
    c1, c2, ok = jax.device_get(jax.jit(jax.vmap(lambda k: crossover(k, to_dev(a), to_dev(b), ctx)))(keys))
    assert np.asarray(ok).all()
    for i in range(64):
        t1, t2 = to_host(c1, i), to_host(c2, i)
        _host_valid(t1)
        _host_valid(t2)
        assert t1.size + t2.size == a.size + b.size
        assert multiset(t1) + multiset(t2) == multiset(a) + multiset(b)
    pairs = {(_s(to_host(c1, i)), _s(to_host(c2, i))) for i in range(64)}
    assert ("(x0 + (x2 * 2.0))", "sin(x1)") in pairs
    assert ("(x0 + sin(2.0))", "(x2 * x1)") in pairs


# ------------------------------------------------------------------------ simplification

_simplify = jax.jit(lambda t: simplify(t, OPS))
_fold = jax.jit(lambda t: fold_constants(t, OPS))
_combine = jax.jit(lambda t: combine_operators(t, OPS))

moderate = st.one_of(st.floats(-4, 4, width=32), st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0]))


@st.composite
def moderate_trees(draw):
    t = draw(trees(OPS, n_features=F, max_leaves=6))
    vals = draw(st.lists(moderate, min_size=t.size, max_size=t.size))
    return Tree(t.op, t.arg, np.where(t.op == CONST, np.asarray(vals, np.float32), 0.0).astype(np.float32))


def _well_conditioned(tree: Tree, X):
    pred, ok, scale = evaluate_tree_numpy(tree, X, OPS)
    runs = [evaluate_tree_numpy(tree, X, OPS, perturb=1e-5, rng=np.random.default_rng(s))[0]
            for s in range(3)]
    spread = np.max(np.abs(np.stack(runs) - pred), axis=0)
    good = ok & np.isfinite(spread) & (spread <= 1e-3 * (1 + np.abs(pred))) & (scale < 1e6)
    return pred, good


@given(tree=moderate_trees())
def test_simplify_preserves_value_and_never_grows(tree):
    assume(tree.size <= L)
    out = to_host(_simplify(to_dev(tree)))
    _host_valid(out)
    assert out.size <= tree.size
    X = np.random.default_rng(0).uniform(-2, 2, (64, F))
    pred, good = _well_conditioned(tree, X)
    new, new_ok, _ = evaluate_tree_numpy(out, X, OPS)
    assert new_ok[good].all()
    np.testing.assert_allclose(new[good], pred[good], rtol=2e-3, atol=2e-3)
    # constant folding is complete: every operator has a variable below it
    for node in walk(nested(out)):
        if node[0] >= 3:
            assert any(n[0] == VAR for n in walk(node))


def test_simplify_folds_and_combines():
    cases = {
        "(x0 + 1.0) + 2.0": "(x0 + 3.0)",
        "2.0 + (1.0 + x0)": "(x0 + 3.0)",
        "(x0 * 2.0) * 4.0": "(x0 * 8.0)",
        "x1 + cos(0.0)": "(x1 + 1.0)",
        "sin(x0) * (2.0 - 1.0)": "(sin(x0) * 1.0)",
        "(x0 - 1.0) - 2.0": "((x0 - 1.0) - 2.0)",  # `-` is not combined (not associative)
    }
    for src, want in cases.items():
        out = to_host(_simplify(to_dev(parse_expression(src, OPS, dtype=np.float32))))
        assert _s(out) == want, src


INV_OPS = make_operator_set(["+", "*"], ["exp", "log", "neg", "sqrt", "square"])
_simplify_inv = jax.jit(lambda t: simplify(t, INV_OPS))
_cancel = jax.jit(lambda t: cancel_inverses(t, INV_OPS))


def test_simplify_cancels_inverse_pairs_only():
    cases = {
        "log(exp(x0 + x1))": "(x0 + x1)",
        "neg(neg(x0)) * x1": "(x0 * x1)",
        "log(exp(log(exp(x0))))": "x0",  # two passes, two pairs
        "exp(log(x0))": "exp(log(x0))",  # x0 > 0 only
        "sqrt(square(x0))": "sqrt(square(x0))",  # |x0|
        "square(sqrt(x0))": "square(sqrt(x0))",  # x0 >= 0 only
        "log(x0) + exp(x1)": "(log(x0) + exp(x1))",
    }
    for src, want in cases.items():
        tree = parse_expression(src, INV_OPS, dtype=np.float32)
        out = to_host(_simplify_inv(to_dev(tree)))
        assert tree_to_string(out, INV_OPS) == want, src


@st.composite
def unary_pair_trees(draw):
    """A random tree under a random pair of unary operators (inverse or not)."""
    t = draw(trees(INV_OPS, n_features=F, max_leaves=4))
    names = ["exp", "log", "neg", "sqrt", "square"]
    inner, outer = (INV_OPS.opcode(draw(st.sampled_from(names))) for _ in range(2))
    return Tree(np.append(t.op, [inner, outer]), np.append(t.arg, [0, 0]),
                np.append(t.value, [0.0, 0.0]).astype(np.float32))


def _assert_rewrite_keeps_value(tree, out, ops, rtol, atol):
    """`out` is a valid, no larger tree, finite and equal wherever `tree` is finite on
    U(-2, 2) data (it may be finite where the original overflowed)."""
    out.validate(ops, F)
    assert out.size <= tree.size
    X = np.random.default_rng(0).uniform(-2, 2, (64, F))
    with np.errstate(all="ignore"):
        old, old_ok, _ = evaluate_tree_numpy(tree, X, ops)
        new, new_ok, _ = evaluate_tree_numpy(out, X, ops)
    assert new_ok[old_ok].all(), (tree_to_string(tree, ops), tree_to_string(out, ops))
    np.testing.assert_allclose(new[old_ok], old[old_ok], rtol=rtol, atol=atol)


@given(tree=unary_pair_trees())
def test_cancel_inverses_preserves_value(tree):
    assume(tree.size <= L)
    _assert_rewrite_keeps_value(tree, to_host(_cancel(to_dev(tree))), INV_OPS, 2e-3, 2e-3)


def test_fold_and_combine_leave_variable_trees_alone():
    tree = parse_expression("sin(x0) * (x1 + x2)", OPS, dtype=np.float32)
    assert _s(to_host(_fold(to_dev(tree)))) == _s(tree)
    assert _s(to_host(_combine(to_dev(tree)))) == _s(tree)


POW_OPS = make_operator_set(["+", "*", "^"], ["sin"])
_fold_pow = jax.jit(lambda t: fold_powers(t, POW_OPS))


def test_fold_powers_rewrites_only_where_exact():
    cases = {
        "(x0 ^ -1.5) ^ 2.0": "(x0 ^ -3.0)",
        "((x0 + x1) ^ 1.5) ^ 2.0": "((x0 + x1) ^ 3.0)",
        "(x0 ^ 3.0) ^ 2.0": "(x0 ^ 6.0)",
        "(x0 ^ 2.0) ^ 2.0": "(x0 ^ 4.0)",
        "(x0 ^ 2.0) ^ 0.5": "((x0 ^ 2.0) ^ 0.5)",  # |x0|, not x0
        "(x0 ^ 2.0) ^ 1.5": "((x0 ^ 2.0) ^ 1.5)",  # |x0|^3, not x0^3
        "(x0 ^ x1) ^ 2.0": "((x0 ^ x1) ^ 2.0)",  # a computed exponent
        "sin(x0 ^ 2.0) ^ 3.0": "(sin((x0 ^ 2.0)) ^ 3.0)",
    }
    for src, want in cases.items():
        out = to_host(_fold_pow(to_dev(parse_expression(src, POW_OPS, dtype=np.float32))))
        assert tree_to_string(out, POW_OPS) == want, src


exponents = st.sampled_from([-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.3, 2.0, 3.0, 4.0])


@given(base=trees(POW_OPS, n_features=F, max_leaves=3), a=exponents, b=exponents)
def test_fold_powers_preserves_value_where_finite(base, a, b):
    tree = Tree(np.append(base.op, [CONST, POW_OPS.opcode("^"), CONST, POW_OPS.opcode("^")]),
                np.append(base.arg, [0, 0, 0, 0]),
                np.append(base.value, [a, 0.0, b, 0.0]).astype(np.float32))
    assume(tree.size <= L)
    _assert_rewrite_keeps_value(tree, to_host(_fold_pow(to_dev(tree))), POW_OPS, 1e-3, 1e-5)


def test_mutation_draws_are_uniform_and_standard_normal():
    # One uniform draw per mutation feeds its decisions, node picks and (Box-Muller)
    # normals: check their laws over many keys.
    from symjax_sr._mutate import Draws

    n = 50_000
    d = jax.jit(jax.vmap(lambda k: Draws.make(k, L)))(jax.random.split(jax.random.key(1), n))
    u = np.concatenate([np.asarray(d.u).ravel(), np.asarray(d.pick).ravel()])
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    z = np.asarray(d.z)
    assert np.isfinite(z).all()
    for col in z.T:  # each of the two normals, and their independence
        assert abs(col.mean()) < 5 / np.sqrt(n) and abs(col.std() - 1) < 0.02
        assert abs((col > 1.959964).mean() - 0.025) < 0.004
    assert abs(np.corrcoef(z.T)[0, 1]) < 0.02

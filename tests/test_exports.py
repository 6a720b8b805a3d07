"""Exports (equinox, torch, JAX callable) against the float64 NumPy reference; gradients
against finite differences; SymPy round trips; fine-tuning helpers; export checks.

Exports compute plain IEEE values: where the search would call a row invalid because
some intermediate was non-finite (`exp(-inf) = 0`), an export may still be finite. So
rows are compared where the reference is finite, and the reference being finite and
stable implies the export is finite.
"""

from __future__ import annotations

import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy
from _roundtrip import EXTRA_SYMPY, all_operators, hypot, random_trees, softclip
from _strategies import datasets, trees
from _tolerance import reference_bound, within_tolerance
from hypothesis import given, settings
from hypothesis import strategies as st

from symjax_sr import (
    EquinoxExpression,
    Tree,
    check_exportable,
    make_operator_set,
    parse_expression,
    quantise_to,
    stack_equinox,
    stack_torch,
    swap_in,
    to_equinox,
    to_torch,
    tree_to_latex,
    tree_to_sympy,
)
from symjax_sr._equations import jax_callable
from symjax_sr._numpy_eval import evaluate_tree_numpy
from symjax_sr._operators import CONST

OPS = all_operators()  # every registry operator plus the custom `softclip` and `hypot`
SMOOTH = make_operator_set(
    ["+", "-", "*", "/", hypot],
    ["exp", "sin", "cos", "tanh", "square", "cube", "neg", "inv", "sqrt", "log", softclip],
    EXTRA_SYMPY,
)


@pytest.fixture(scope="module")
def torch():
    import torch  # a test extra: these tests fail, not skip, without it

    return torch


def _check_against_reference(tree, X, got):
    """`got` within the kernel tolerance where both are finite; finite where the
    reference is finite and stable."""
    got = np.asarray(got, np.float64)
    ok_got = np.isfinite(got)
    good, bad = within_tolerance(tree, X, got, ok_got, OPS)
    assert good, (tree, X[bad], got[bad])
    ref, ok64, _, stable = reference_bound(tree, X, OPS)
    must = ok64 & stable
    if X.dtype == np.float32:  # and finite in float32 arithmetic too (no overflow)
        must &= evaluate_tree_numpy(tree, X, OPS, float32=True)[1]
    assert ok_got[must].all(), (tree, X[must & ~ok_got], ref[must & ~ok_got])


# ---------------------------------------------------------------------------------
# Values against the reference


@settings(max_examples=40)
@given(tree=trees(OPS), X=datasets())
def test_equinox_tree_matches_reference(tree, X):
    f = to_equinox(tree, operators=OPS)
    _check_against_reference(tree, X, f(X))


@settings(max_examples=40)
@given(tree=trees(OPS), X=datasets())
def test_torch_tree_matches_reference(torch, tree, X):
    f = to_torch(tree, operators=OPS)
    with torch.no_grad():
        got = f(torch.as_tensor(X)).numpy()
    _check_against_reference(tree, X, got)


@pytest.mark.parametrize("name", OPS.names)
def test_each_operator_matches_reference(torch, name):
    """Every operator alone, on a grid with negatives, fractions, zeros and large values."""
    op = OPS.operator(OPS.opcode(name))
    if op.infix is not None:
        src = f"x0 {op.infix} x1"
    else:
        src = f"{name}(x0, x1)" if op.arity == 2 else f"{name}(x0)"
    tree = parse_expression(src, OPS)
    grid = np.concatenate([np.linspace(-3.7, 3.3, 15), [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 40.0, -40.0]])
    X = np.stack(np.meshgrid(grid, grid[::-1]), -1).reshape(-1, 2).astype(np.float32)
    _check_against_reference(tree, X, to_equinox(tree, operators=OPS)(X))
    with torch.no_grad():
        _check_against_reference(tree, X, to_torch(tree, operators=OPS)(torch.as_tensor(X)).numpy())


@settings(max_examples=5)
@given(tree=trees(OPS), X=datasets())
def test_jax_callable_matches_reference(tree, X):
    out = jax_callable(tree, OPS)
    _check_against_reference(tree, X, out["callable"](X, out["parameters"]))


def _well_conditioned(tree, X, ops):
    """Reference rows that are finite and move by at most 1e-8 relative when data,
    constants and every intermediate are perturbed by 1e-12 relative: there SymPy's
    reassociated form must agree with the tree to 1e-6."""
    pred, ok, _ = evaluate_tree_numpy(tree, X, ops)
    stable = ok.copy()
    rng = np.random.default_rng(0)
    for _ in range(3):
        Xp = X * (1 + 1e-12 * rng.uniform(-1, 1, X.shape))
        c = tree.constants
        tp = tree.with_constants(c * (1 + 1e-12 * rng.uniform(-1, 1, c.shape)))
        p, okp, _ = evaluate_tree_numpy(tp, Xp, ops, perturb=1e-12, rng=rng)
        with np.errstate(invalid="ignore"):
            stable &= okp & (np.abs(p - pred) <= 1e-8 * np.abs(pred))
    return pred, stable


@settings(max_examples=8)
@given(seed=st.integers(0, 2**31 - 1))
def test_sympy_exports_match_reference(torch, seed):
    """A SymPy expression exports as written; `log(x + 1)` (log1p's SymPy form) is
    computed as written too, so trees with log1p are left to the tree-export tests."""
    X = np.random.default_rng(seed).uniform(-3, 3, (32, 3))
    log1p = OPS.opcode("log1p")
    for tree in random_trees(seed):
        tree = Tree(tree.op, tree.arg, tree.value.astype(np.float64))
        expr = tree_to_sympy(tree, OPS)
        if log1p in tree.op or expr.has(sympy.I, sympy.nan, sympy.zoo, sympy.oo):
            continue
        ref, mask = _well_conditioned(tree, X, OPS)
        with jax.enable_x64(True):
            got_eqx = np.asarray(to_equinox(expr, operators=OPS)(X))
        with torch.no_grad():
            got_torch = to_torch(expr, operators=OPS, dtype=torch.float64)(torch.as_tensor(X)).numpy()
        for got in (got_eqx, got_torch):
            with np.errstate(invalid="ignore"):
                close = np.abs(got - ref) <= 1e-6 * np.abs(ref)
            assert close[mask].all(), (expr, X[mask & ~close], got[mask & ~close], ref[mask & ~close])


# ---------------------------------------------------------------------------------
# Gradients with respect to the constants


@st.composite
def _smooth_cases(draw):
    tree = draw(trees(SMOOTH, n_features=2, max_leaves=6).filter(lambda t: (t.op == CONST).any()))
    k = int((tree.op == CONST).sum())
    values = draw(st.lists(st.floats(-3, 3, width=32), min_size=k, max_size=k))
    return tree.with_constants(np.asarray(values, np.float32))


def _fd(tree64, X, w, j, h):
    def loss(c):
        pred, ok, _ = evaluate_tree_numpy(tree64.with_constants(c), X, SMOOTH)
        return np.sum(w * pred), ok

    c = tree64.constants.copy()
    up, down = c.copy(), c.copy()
    up[j] += h
    down[j] -= h
    (lu, oku), (ld, okd) = loss(up), loss(down)
    return (lu - ld) / (2 * h), oku & okd


def _fd_reference(tree):
    """`(rows, fd, tol, use)`: central differences of `sum(f(rows))` per constant from
    the float64 NumPy reference, their tolerance (1e-6 relative plus the truncation
    error, measured as what steps h and h/4 disagree by) and where they are usable."""
    X = np.random.default_rng(0).uniform(-2, 2, (16, 2))
    tree64 = Tree(tree.op, tree.arg, tree.value.astype(np.float64))
    c = tree64.constants
    _, ok, _ = evaluate_tree_numpy(tree64, X, SMOOTH)
    fd, fd2 = np.full(len(c), np.nan), np.full(len(c), np.nan)
    for j in range(len(c)):
        h = 1e-5 * max(1.0, abs(c[j]))
        d1, ok1 = _fd(tree64, X[ok], np.ones(ok.sum()), j, h)
        d2, ok2 = _fd(tree64, X[ok], np.ones(ok.sum()), j, h / 4)
        if ok1.all() and ok2.all():
            fd[j], fd2[j] = d1, d2
    tol = 1e-6 * (1 + np.abs(fd)) + 4 * np.abs(fd - fd2)
    return X[ok], fd, tol, np.isfinite(fd) & np.isfinite(tol) & ok.any()


@settings(max_examples=30)
@given(tree=_smooth_cases())
def test_gradients_equal_finite_differences(torch, tree):
    Xok, fd, tol, use = _fd_reference(tree)
    with jax.enable_x64(True):
        f = to_equinox(tree, operators=SMOOTH)
        g_eqx = np.asarray(eqx.filter_grad(lambda m: jnp.sum(m(Xok)))(f).constants)
        t = to_torch(tree, operators=SMOOTH, dtype=torch.float64)
        t(torch.as_tensor(Xok)).sum().backward()
        g_torch = t.constants.grad.numpy()
    assert g_eqx.shape == fd.shape
    for g in (g_eqx, g_torch):
        assert np.all(np.abs(g[use] - fd[use]) <= tol[use]), (tree, g, fd)


@settings(max_examples=4)
@given(tree=_smooth_cases())
def test_jax_callable_gradients_equal_finite_differences(tree):
    Xok, fd, tol, use = _fd_reference(tree)
    with jax.enable_x64(True):
        call = jax_callable(tree, SMOOTH)
        g = np.asarray(jax.grad(lambda p: jnp.sum(call["callable"](Xok, p)))(call["parameters"]))
    assert np.all(np.abs(g[use] - fd[use]) <= tol[use]), (tree, g, fd)


# ---------------------------------------------------------------------------------
# SymPy round trips


@settings(max_examples=25)
@given(tree=trees(OPS))
def test_sympy_round_trip_is_exact_in_float64(torch, tree):
    """`to_equinox(expr).sympy()` is `expr` itself: constants in float64 lose nothing."""
    expr = tree_to_sympy(tree, OPS)
    with jax.enable_x64(True):
        assert to_equinox(expr, operators=OPS).sympy() == expr
        assert to_equinox(tree, operators=OPS).sympy() == expr
    back = to_torch(expr, operators=OPS, dtype=torch.float64).sympy()
    assert back == expr


@settings(max_examples=25)
@given(tree=trees(OPS, n_features=2), X=datasets(n_features=2), data=st.data())
def test_tree_export_tracks_new_constants(tree, X, data):
    """Constants set on the module are the tree's constants in postfix order."""
    k = int((tree.op == CONST).sum())
    new = np.asarray(data.draw(st.lists(st.floats(-5, 5, width=32), min_size=k, max_size=k)), np.float32)
    f = to_equinox(tree, operators=OPS, variable_names=["a", "b"])
    f = eqx.tree_at(lambda m: m.constants, f, jnp.asarray(new))
    moved = tree.with_constants(new)
    _check_against_reference(moved, X, f(X))
    with jax.enable_x64(True):
        g = to_equinox(tree, operators=OPS, variable_names=["a", "b"])
        g = eqx.tree_at(lambda m: m.constants, g, jnp.asarray(new, jnp.float64))
        assert g.sympy() == tree_to_sympy(moved, OPS, ["a", "b"])


def test_float32_round_trip_prints_short_decimals(torch):
    expr = sympy.sympify("2.5*cos(x0) + 0.1*x1**3 - 1.7*Max(0, x1)")
    assert to_equinox(expr).sympy() == expr
    assert to_equinox(expr).constants.dtype == jnp.float32
    assert to_torch(expr).sympy() == expr


# ---------------------------------------------------------------------------------
# The module's interface


def test_jit_vmap_keywords_and_stacking(getkey):
    ops = make_operator_set(["+", "*", "-"], ["cos", "exp"])
    t1 = parse_expression("x0 * 2.5 + cos(x1)", ops)
    t2 = parse_expression("exp(x1 - 0.5) * x0", ops)
    X = jax.random.normal(getkey(), (7, 2))
    f = to_equinox(t1, operators=ops)
    assert isinstance(f, EquinoxExpression)
    want = 2.5 * X[:, 0] + jnp.cos(X[:, 1])
    np.testing.assert_allclose(f(X), want, rtol=1e-6)
    np.testing.assert_allclose(eqx.filter_jit(f)(X), want, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(f)(X), want, rtol=1e-6)
    np.testing.assert_allclose(f(x0=X[:, 0], x1=X[:, 1]), want, rtol=1e-6)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def step(m, X):
        return m(X)

    step(f, X)
    step(eqx.tree_at(lambda m: m.constants, f, f.constants + 1.0), X)  # no retrace

    s = stack_equinox([t1, t2], operators=ops)
    out = s(X)
    assert out.shape == (7, 2)
    np.testing.assert_allclose(out[:, 0], want, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], jnp.exp(X[:, 1] - 0.5) * X[:, 0], rtol=1e-6)
    assert s.sympy() == [tree_to_sympy(t1, ops), tree_to_sympy(t2, ops)]
    assert to_equinox(sympy.Float(1.5))(X).shape == (7,)  # a constant broadcasts


def test_stack_torch(torch):
    exprs = [sympy.sympify("x0 + 1.5"), sympy.sympify("x0 * x1")]
    X = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
    with torch.no_grad():
        out = stack_torch(exprs)(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(out, np.stack([X[:, 0] + 1.5, X[:, 0] * X[:, 1]], -1), rtol=1e-6)


def test_export_errors():
    tree = parse_expression("x0 + 1.0", OPS)
    with pytest.raises(ValueError, match="needs its `OperatorSet`"):
        to_equinox(tree)
    with pytest.raises(ValueError, match="variable_names"):
        to_equinox(sympy.sympify("a + b"))
    with pytest.raises(ValueError, match=r"not in `variable_names`"):
        to_equinox(sympy.sympify("a + b"), variable_names=["a"])
    f = to_equinox(sympy.sympify("a + b"), variable_names=["a", "b"])
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 2\]"):
        f(jnp.ones((3, 3)))
    with pytest.raises(TypeError, match=r"missing \['b'\]"):
        f(a=1.0)
    with pytest.raises(ValueError, match="custom operator"):
        to_equinox(sympy.Function("mystery")(sympy.Symbol("x0")))
    with pytest.raises(TypeError, match="stack_equinox"):
        to_equinox([tree, tree], operators=OPS)


# ---------------------------------------------------------------------------------
# Custom operators through every export


def test_custom_operators_carry_through_every_export(torch):
    tree = parse_expression("softclip(x0 * 2.5) + hypot(x1, 3.0)", OPS)
    X = np.random.default_rng(2).uniform(-3, 3, (20, 2)).astype(np.float32)
    expr = tree_to_sympy(tree, OPS)
    assert expr.has(sympy.Function("softclip"))
    assert r"\operatorname{softclip}" in tree_to_latex(tree, OPS)
    call = jax_callable(tree, OPS)
    _check_against_reference(tree, X, call["callable"](X, call["parameters"]))
    for f in (to_equinox(tree, operators=OPS), to_equinox(expr, operators=OPS)):
        _check_against_reference(tree, X, f(X))
    with torch.no_grad():
        for f in (to_torch(tree, operators=OPS), to_torch(expr, operators=OPS)):  # JAX bridge
            _check_against_reference(tree, X, f(torch.as_tensor(X)).numpy())
        calls = []

        def torch_softclip(x):
            calls.append(x.shape)
            return 2.0 * torch.tanh(x / 2.0)

        for key in ("softclip", sympy.Function("softclip")):
            f = to_torch(expr, operators=OPS, extra_torch_mappings={key: torch_softclip})
            _check_against_reference(tree, X, f(torch.as_tensor(X)).numpy())
    assert len(calls) == 2


def _bad_set(mapping):
    def myop(x):
        return x + 1.0

    return make_operator_set(["+"], [myop], {"myop": mapping})


def test_check_exportable():
    check_exportable(OPS)  # every registry operator and two custom ones
    bad_head = _bad_set(lambda x: sympy.Function("g")(x, 2))
    with pytest.raises(ValueError, match=r"`myop`.*uses `g`"):
        check_exportable(bad_head)
    # ... which is what would otherwise fail at export time:
    tree = parse_expression("myop(x0)", bad_head)
    with pytest.raises(ValueError, match="custom operator"):
        to_equinox(tree_to_sympy(tree, bad_head), operators=bad_head)
    not_sympy = _bad_set(lambda x: "x + 1")
    with pytest.raises(ValueError, match=r"`myop`.*not a SymPy expression"):
        check_exportable(not_sympy)
    with pytest.raises((TypeError, AttributeError, sympy.SympifyError)):
        tree_to_sympy(parse_expression("myop(x0) + x0", not_sympy), not_sympy)
    raises = _bad_set(lambda x, y: x + y)  # a unary operator mapped by a binary lambda
    with pytest.raises(ValueError, match=r"`myop`.*raised TypeError"):
        check_exportable(raises)
    check_exportable(_bad_set(lambda x: x + 1))  # a good mapping passes


def test_missing_torch_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "symjax_sr.export._torch_module", raising=False)
    with pytest.raises(ImportError, match=r"pip install symjax_sr\[torch\]"):
        to_torch(sympy.sympify("x0 + 1.0"))


# ---------------------------------------------------------------------------------
# Fine-tuning helpers


def test_quantise_to(torch, getkey):
    expr = sympy.sympify("2.4567*x0 + 0.0123 - 1.2349*cos(x1)")
    f = to_equinox(expr)
    q = quantise_to(f, 0.01)
    assert q.sympy() == sympy.sympify("2.46*x0 + 0.01 - 1.23*cos(x1)")
    c, cq = np.asarray(f.constants, np.float64), np.asarray(q.constants, np.float64)
    assert np.all(np.abs(cq - c) <= 0.005 + 1e-6)
    assert np.allclose(cq / 0.01, np.round(cq / 0.01), atol=1e-4)
    np.testing.assert_array_equal(f.constants, to_equinox(expr).constants)  # input unchanged
    # In a larger model only the formula's constants move.
    mlp = eqx.nn.MLP(2, 1, 4, 1, key=getkey())
    model = (mlp, f)
    qm = quantise_to(model, 0.5)
    assert eqx.tree_equal(qm[0], mlp)
    np.testing.assert_array_equal(qm[1].constants, np.round(c / 0.5) * 0.5)
    t = quantise_to(to_torch(expr), 0.01)
    assert t.sympy() == q.sympy()
    with pytest.raises(ValueError, match="positive finite"):
        quantise_to(f, 0.0)
    with pytest.raises(ValueError, match="no exported formula"):
        quantise_to(mlp, 0.1)


class _Hybrid(eqx.Module):
    scale: jax.Array
    part: eqx.Module

    def __call__(self, x):
        return self.scale * self.part(x) + x[0]


def test_swap_in(getkey):
    mlp = eqx.nn.MLP(2, "scalar", 8, 2, key=getkey())
    model = _Hybrid(jnp.asarray(3.0), mlp)
    formula = to_equinox(sympy.sympify("2.5*cos(x0) + x1"))
    x = jnp.ones(2)
    new = swap_in(model, lambda m: m.part, formula, example=x)
    X = jax.random.normal(getkey(), (6, 2))
    np.testing.assert_allclose(jax.vmap(new)(X), 3.0 * formula(X) + X[:, 0], rtol=1e-6)
    # The formula's constant trains with the rest: d/d(2.5) = scale * sum(cos(x0)).
    grads = eqx.filter_grad(lambda m: jnp.sum(jax.vmap(m)(X)))(new)
    np.testing.assert_allclose(grads.part.constants, [3.0 * jnp.sum(jnp.cos(X[:, 0]))], rtol=1e-5)
    np.testing.assert_allclose(grads.scale, jnp.sum(formula(X)), rtol=1e-5)
    two = stack_equinox([sympy.sympify("x0"), sympy.sympify("x1")])
    with pytest.raises(ValueError, match="stack_equinox"):
        swap_in(model, lambda m: m.part, two, example=x)

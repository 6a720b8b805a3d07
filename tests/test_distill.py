"""`distill`: regress a JAX callable (a network, an equinox module) over sample inputs."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy

from symjax_sr import distill

SEARCH = dict(
    binary_operators=["+", "-", "*", "/"],
    populations=4,
    population_size=20,
    ncycles_per_iteration=30,
    maxsize=9,
    niterations=8,
    verbosity=0,
    progress=False,
    temp_equation_file=True,
    random_state=0,
    deterministic=True,
)
X = np.random.default_rng(0).uniform(0.5, 2.0, (64, 2)).astype(np.float32)


class _Field(eqx.Module):
    """A per-sample module with a trainable-looking leaf, as a network would be."""

    scale: jax.Array

    def __call__(self, z):
        return jnp.stack([self.scale * z[0] * z[1], z[0] - z[1]])


def test_distill_module_one_formula_per_output():
    model = distill(_Field(jnp.asarray(2.0)), X, **SEARCH)
    found = model.sympy()
    assert len(found) == 2
    x0, x1 = sympy.symbols("x0 x1")
    truth = [2 * x0 * x1, x0 - x1]
    for e, t in zip(found, truth):
        e = sympy.nsimplify(e, tolerance=1e-4, rational=True)
        assert sympy.simplify(e - t) == 0, (e, t)
    # the fitted model predicts the module's output
    pred = model.predict(X)
    want = np.asarray(jax.vmap(_Field(jnp.asarray(2.0)))(X))
    np.testing.assert_allclose(pred, want, rtol=1e-4, atol=1e-4)


def test_distill_batched_and_per_sample_agree():
    per_sample = lambda z: z[0] * z[1]  # noqa: E731
    batched = lambda Z: Z[:, 0] * Z[:, 1]  # noqa: E731
    a = distill(per_sample, X, **SEARCH)
    b = distill(batched, X, **SEARCH)
    assert a.equations_["equation"].tolist() == b.equations_["equation"].tolist()
    assert str(a.sympy()) == "x0*x1"


def test_distill_errors():
    with pytest.raises(TypeError, match="callable"):
        distill(3.0, X, **SEARCH)
    with pytest.raises(ValueError, match="single feature"):
        distill(lambda z: z, X[:, 0], **SEARCH)
    with pytest.raises(ValueError, match="NaN or inf"):
        distill(lambda z: jnp.log(z[0] - 1.0), X, **SEARCH)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        distill(lambda z: z[0], bad, **SEARCH)
    with pytest.raises(TypeError, match="Did you mean"):
        distill(lambda z: z[0], X, niteration=3)
    with pytest.raises(ValueError, match="per-sample"):
        distill(lambda z: jnp.ones((3, 4, 5)), X, **SEARCH)
    with pytest.raises(TypeError, match="batched"):
        distill(lambda z: z[0], X, batched="yes", **SEARCH)

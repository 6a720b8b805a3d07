"""Quick start: fit a formula with PySR's API, then use it from JAX.

    python examples/quickstart.py
"""

import jax
import numpy as np

from symjax_sr import PySRRegressor

rng = np.random.default_rng(0)
X = rng.uniform(-3, 3, (200, 2)).astype(np.float32)
y = X[:, 0] ** 2 + 2.5 * np.cos(X[:, 1])

model = PySRRegressor.from_config("quick", random_state=0,
                                  early_stop_condition=lambda loss, c: loss < 1e-8 and c <= 10)
model.fit(X, y)
print(model)
print("best:", model.sympy())

# The chosen equation as a differentiable JAX function of data and constants.
f = model.jax()
grad = jax.grad(lambda p: ((f["callable"](X, p) - y) ** 2).mean())(f["parameters"])
print("gradient of the loss with respect to the constants:", grad)

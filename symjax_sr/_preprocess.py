"""PySR's optional preprocessing before a search: feature selection and denoising.

Both follow PySR's own choices so that results carry over: `select_k_features` keeps the
`k` features a shallow random forest ranks highest (PySR's `run_feature_selection`), and
`denoise` replaces each target by the mean of a Gaussian process fitted to it (RBF with a
length scale per feature, plus white noise and a constant), optionally predicted at
`Xresampled`. Host-side scikit-learn, run once per fit.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["denoise", "select_features"]


def select_features(X: np.ndarray, y: np.ndarray, k: int, random_state=None) -> np.ndarray:
    """Boolean mask `[F]` of the `k` features a random forest finds most important."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.feature_selection import SelectFromModel

    forest = RandomForestRegressor(n_estimators=100, max_depth=3, random_state=random_state)
    forest.fit(X, y if y.ndim == 1 or y.shape[1] > 1 else y[:, 0])
    selector = SelectFromModel(forest, threshold=-np.inf, max_features=k, prefit=True)
    return selector.get_support(indices=False)


def denoise(X: np.ndarray, Y: np.ndarray, Xresampled: np.ndarray | None = None,
            random_state=None) -> tuple[np.ndarray, np.ndarray]:
    """`(X', Y')`: each column of `Y [N, outputs]` replaced by a Gaussian process's mean,
    at `X` or, when given, at `Xresampled` (which then becomes `X'`)."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    at = X if Xresampled is None else Xresampled
    out = []
    for j in range(Y.shape[1]):
        kernel = RBF(np.ones(X.shape[1])) + WhiteKernel(1e-1) + ConstantKernel()
        gp = GaussianProcessRegressor(kernel=kernel, n_restarts_optimizer=50,
                                      random_state=random_state)
        with warnings.catch_warnings():
            # a hyperparameter at its bound (no constant offset, no noise) is a fine fit
            from sklearn.exceptions import ConvergenceWarning

            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(X, Y[:, j])
        out.append(gp.predict(at))
    return at, np.stack(out, axis=1)

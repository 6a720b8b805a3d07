"""scikit-learn's estimator checks on a tiny search (one short iteration per fit).

Every check runs; none is skipped. The tiny search cannot fit arbitrary data well, which
the estimator declares with sklearn's `poor_score` tag (the one concession).
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from symjax_sr import PySRRegressor

# The checks are about the estimator's API, so the search is the smallest program: no
# constant optimiser, simplification or migration (their own tests cover those). Each
# check's data size is its own row bucket, and so its own compile.
TINY = PySRRegressor(
    niterations=1, populations=1, population_size=10, tournament_selection_n=5,
    ncycles_per_iteration=3, maxsize=7, binary_operators=["+", "*"], random_state=0,
    deterministic=True, verbosity=0, progress=False, temp_equation_file=True, evaluator="switch",
    should_optimize_constants=False, should_simplify=False, migration=False, hof_migration=False,
)


@parametrize_with_checks([TINY])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)

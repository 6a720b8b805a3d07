"""PySR's equations table and what hangs off it: hall_of_fame.csv, LaTeX table, JAX export.

The table holds the Pareto front (PySR's `equations_`), simplest first, with columns
`complexity, loss, equation, score, sympy_format, lambda_format` and the host `tree`
each row came from (used by the exports).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._evaluate import ReferenceEvaluator
from ._numpy_eval import evaluate_tree_numpy
from ._operators import CONST, OperatorSet
from ._selection import compute_scores
from ._strings import tree_to_string
from ._sympy import tree_to_latex, tree_to_sympy
from ._tree import Tree, stack_trees

__all__ = ["CallableEquation", "front_rows", "equations_table", "write_hall_of_fame",
           "read_hall_of_fame", "read_hall_of_fame_csv", "atomic_write", "latex_table", "jax_callable",
           "ParametricCallableEquation", "parametric_jax_callable", "TemplateCallableEquation",
           "equation_string"]


class CallableEquation:
    """`lambda_format`: the equation as a NumPy function of `X [N, F]` (float64)."""

    def __init__(self, tree: Tree, operators: OperatorSet, equation: str):
        self.tree, self.operators, self.equation = tree, operators, equation

    def __call__(self, X):
        pred, _, _ = evaluate_tree_numpy(self.tree, np.asarray(X, dtype=np.float64), self.operators)
        return pred

    def __repr__(self):
        return f"PySRFunction(X=>{self.equation})"


class ParametricCallableEquation(CallableEquation):
    """`lambda_format` of a parametric equation: a NumPy function of `X [N, F]` and each
    row's category label; parameter `j` is the tree's variable `F + j`."""

    def __init__(self, tree: Tree, operators: OperatorSet, equation: str, params, categories):
        super().__init__(tree, operators, equation)
        self.params, self.categories = np.asarray(params), np.asarray(categories)

    def __call__(self, X, category):
        from ._parametric import encode_category

        X = np.asarray(X, dtype=np.float64)
        codes, _ = encode_category(category, X.shape[0], self.categories)
        return super().__call__(np.concatenate([X, self.params[:, codes].T], axis=1))


class TemplateCallableEquation:
    """`lambda_format` of a template equation: a function of `X [N, F]` (and each row's
    category label, for a template that takes `category`), run by JAX in float64."""

    def __init__(self, member, operators: OperatorSet, layout, equation: str, categories=None):
        self.member, self.operators, self.layout = member, operators, layout
        self.equation, self.categories = equation, categories
        self._export = None  # `member.jax(...)` in float64, made at the first call

    def __getstate__(self):  # the export holds local functions: rebuilt after unpickling
        return {**self.__dict__, "_export": None}

    def __call__(self, X, category=None):
        import jax

        from ._parametric import encode_category

        X = np.asarray(X, dtype=np.float64)
        codes = None
        if self.categories is not None:
            if category is None:
                raise ValueError("This template takes `category`: pass each row's label.")
            codes, _ = encode_category(category, X.shape[0], self.categories)
        elif category is not None:
            raise ValueError("This template takes no `category`; drop it.")
        with jax.enable_x64(True):
            if self._export is None:
                self._export = self.member.jax(self.operators, self.layout)
            exp = self._export
            return np.asarray(exp["callable"](jnp.asarray(X), exp["parameters"], codes))

    def __repr__(self):
        return f"PySRFunction(X=>{self.equation})"


def equation_string(tree, operators: OperatorSet, names: list[str], layout=None,
                    precision: int | None = None) -> str:
    """The equation's text: a tree in `names`, or a template member (`layout` given)."""
    if layout is not None:
        return tree.to_string(operators, layout, precision)
    return tree_to_string(tree, operators, names, precision=precision)


def front_rows(entries, operators: OperatorSet, names: list[str], layout=None) -> pd.DataFrame:
    """The Pareto front as `complexity, loss, equation` (cheap: what hall_of_fame.csv holds)."""
    front = [e for e in entries if e.pareto]
    return pd.DataFrame({
        "complexity": [e.complexity for e in front],
        "loss": [e.loss for e in front],
        "equation": [equation_string(e.tree, operators, names, layout) for e in front],
        "tree": [e.tree for e in front],
    })


def equations_table(entries, operators: OperatorSet, names: list[str], loss_scale: str,
                    categories=None, layout=None) -> pd.DataFrame:
    """Pareto-front entries (`HofEntry`s) -> PySR's equations DataFrame. Parametric
    entries (with `categories`, the labels) get a `parameters` column
    `[n_params, n_categories]`, and a `lambda_format` that takes the category. Template
    entries (`layout` given) get `sympy_format` `{expression: SymPy}` and `parameters`
    `{name: values}`."""
    table = front_rows(entries, operators, names, layout)
    columns = ["complexity", "loss", "equation", "sympy_format", "lambda_format", "tree"]
    if layout is not None:
        table["sympy_format"] = [m.to_sympy(operators, layout) for m in table["tree"]]
        table["parameters"] = [m.parameters(layout) for m in table["tree"]]
        table["lambda_format"] = [TemplateCallableEquation(m, operators, layout, eq, categories)
                                  for m, eq in zip(table["tree"], table["equation"])]
        columns.insert(4, "parameters")
    elif categories is None:
        table["sympy_format"] = [tree_to_sympy(t, operators, names) for t in table["tree"]]
        table["lambda_format"] = [CallableEquation(t, operators, eq)
                                  for t, eq in zip(table["tree"], table["equation"])]
    else:
        table["sympy_format"] = [tree_to_sympy(t, operators, names) for t in table["tree"]]
        params = [e.params for e in entries if e.pareto]
        table["parameters"] = params
        table["lambda_format"] = [ParametricCallableEquation(t, operators, eq, p, categories)
                                  for t, eq, p in zip(table["tree"], table["equation"], params)]
        columns.insert(4, "parameters")
    table = table[columns]
    table.insert(3, "score", compute_scores(table["loss"], table["complexity"], loss_scale))
    return table


def atomic_write(path: str, content: str | bytes) -> None:
    """Write `path` so that readers see the old file or the new one, never a torn one."""
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_")
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_hall_of_fame(run_dir: str, table: pd.DataFrame) -> str:
    """Write `hall_of_fame.csv` atomically (PySR's columns), keeping the previous as `.bak`."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "hall_of_fame.csv")
    csv = table[["complexity", "loss", "equation"]].rename(
        columns={"complexity": "Complexity", "loss": "Loss", "equation": "Equation"}
    ).to_csv(index=False)
    if os.path.exists(path):
        shutil.copyfile(path, path + ".bak")
    atomic_write(path, csv)
    return path


def read_hall_of_fame_csv(path: str) -> pd.DataFrame:
    """`hall_of_fame.csv` (ours or PySR's) with lower-case `complexity, loss, equation`."""
    csv = pd.read_csv(path)
    csv.columns = [c.strip().lower() for c in csv.columns]
    missing = {"complexity", "loss", "equation"} - set(csv.columns)
    if missing:
        raise ValueError(f"{path} lacks the column(s) {sorted(missing)}; is it a hall_of_fame.csv?")
    return csv


def read_hall_of_fame(run_dir: str, operators: OperatorSet, names: list[str],
                      loss_scale: str) -> pd.DataFrame:
    """The equations table from a run directory's `hall_of_fame.csv`."""
    from ._run import HofEntry
    from ._strings import parse_expression

    csv = read_hall_of_fame_csv(os.path.join(run_dir, "hall_of_fame.csv"))
    entries = [
        HofEntry(int(c), float(loss), parse_expression(str(e), operators, names), True)
        for c, loss, e in zip(csv["complexity"], csv["loss"], csv["equation"])
    ]
    return equations_table(entries, operators, names, loss_scale)


def latex_table(tables, operators, names, indices, precision, columns) -> str:
    """Booktabs table of the chosen rows of every output, as PySR's `latex_table`."""
    allowed = ("equation", "complexity", "loss", "score")
    bad = [c for c in columns if c not in allowed]
    if bad:
        raise ValueError(f"Unknown latex_table column(s) {bad}; valid: {allowed}.")
    headers = {"equation": "Equation", "complexity": "Complexity", "loss": "Loss", "score": "Score"}
    lines = [r"\begin{table}[h]", r"\begin{center}",
             r"\begin{tabular}{@{}" + "".join("l" if c == "equation" else "c" for c in columns) + "@{}}",
             r"\toprule", " & ".join(headers[c] for c in columns) + r" \\", r"\midrule"]
    for j, table in enumerate(tables):
        rows = range(len(table)) if indices is None else (
            indices[j] if indices and isinstance(indices[0], (list, tuple)) else indices)
        for i in rows:
            r = table.iloc[int(i)]
            cells = []
            for c in columns:
                if c == "equation":
                    cells.append("$" + tree_to_latex(r["tree"], operators, names, precision) + "$")
                elif c == "complexity":
                    cells.append(str(int(r["complexity"])))
                else:
                    cells.append(f"{float(r[c]):.{precision}g}")
            lines.append(" & ".join(cells) + r" \\")
        if j < len(tables) - 1:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{center}", r"\end{table}"]
    return "\n".join(lines)


def jax_callable(tree: Tree, operators: OperatorSet) -> dict:
    """PySR's `jax()` contract: `{"callable": f, "parameters": p}`, `f(X [N, F], p) -> [N]`.

    `p` are the equation's constants in postfix order; `f` is differentiable in both.
    """
    n_const = int((tree.op == CONST).sum())
    pop = stack_trees([tree], max(tree.size, 1), max(n_const, 1))
    ev = ReferenceEvaluator(operators)

    def f(X, parameters):
        X = jnp.asarray(X)
        const = jnp.zeros((1, pop.nconst), X.dtype).at[0, :n_const].set(jnp.asarray(parameters, X.dtype))
        p = type(pop)(pop.op, pop.arg, const)
        pred, _ = ev.predict(p, X.T)
        return pred[0]

    return {"callable": f, "parameters": jnp.asarray(tree.constants)}


def parametric_jax_callable(tree: Tree, operators: OperatorSet, params) -> dict:
    """`jax()` of a parametric equation: `{"callable": f, "parameters": (constants, values)}`
    with `f(X [N, F], parameters, category [N]) -> [N]`, `values [n_params, n_categories]`
    and `category` each row's column index into them; differentiable in `parameters`."""
    base = jax_callable(tree, operators)

    def f(X, parameters, category):
        X = jnp.asarray(X)
        constants, values = parameters
        per_row = jnp.asarray(values, X.dtype)[:, jnp.asarray(category)].T
        return base["callable"](jnp.concatenate([X, per_row], axis=1), constants)

    return {"callable": f, "parameters": (base["parameters"], jnp.asarray(params))}

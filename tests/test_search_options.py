"""The optional search paths (mini-batching, annealing, warm-up, constraints, no
skipping of failed mutations) run together and keep every member valid."""

import numpy as np

import symjax_sr as sr
from symjax_sr._options import SearchOptions
from symjax_sr._run import run_search


def _max_nesting(tree, ops, outer, inner):
    """Host count of `inner` nested inside `outer` (SymbolicRegression.jl's definition)."""
    arity = ops.arity_table[tree.op]
    stack, worst = [], 0
    for o, a in zip(tree.op, arity):
        kids = [stack.pop() for _ in range(a)]
        below = max(kids, default=0)
        if o == outer:
            worst = max(worst, below)
        stack.append(below + (o == inner))
    return worst


def test_optional_paths_keep_members_valid():
    rng = np.random.default_rng(0)
    X = rng.uniform(0.5, 2, (120, 2)).astype(np.float32)
    y = np.log(X[:, 0]) * X[:, 1]
    ops = sr.make_operator_set(["+", "-", "*", "/"], ["log", "exp", "sin"])
    sin, exp = ops.opcode("sin"), ops.opcode("exp")
    opts = SearchOptions(
        ops, 2, maxsize=14, maxdepth=6, populations=3, population_size=16,
        ncycles_per_iteration=15, batching=True, batch_size=32, annealing=True,
        warmup_maxsize_by=0.5, skip_mutation_failures=False,
        constraints=((ops.opcode("/"), -1, 3),),
        nested_constraints=((sin, sin, 0), (exp, exp, 0)),
    )
    res = run_search(X, y, opts, niterations=4, random_state=1, evaluator="switch")
    state = res.state
    loss = np.asarray(state.loss)
    assert not np.isnan(loss).any()
    assert np.isfinite(loss).any()
    div = ops.opcode("/")
    for i in range(opts.populations):
        pop = sr.Population(state.pop.op[i], state.pop.arg[i], state.pop.const[i])
        for t in pop.trees():
            t.validate(ops, 2)
            assert t.size <= opts.maxsize and t.depth(ops) <= opts.maxdepth
            assert _max_nesting(t, ops, sin, sin) == 0 and _max_nesting(t, ops, exp, exp) == 0
            # the right argument of every division has complexity <= 3
            arity = ops.arity_table[t.op]
            sizes = []
            for o, a in zip(t.op, arity):
                kids = [sizes.pop() for _ in range(a)][::-1]
                if o == div:
                    assert kids[1] <= 3
                sizes.append(1 + sum(kids))
    assert res.hall_of_fame and all(np.isfinite(e.loss) for e in res.hall_of_fame)

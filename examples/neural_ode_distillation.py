"""Neural-ODE distillation: learn a vector field with a network, read off its formula.

    python examples/neural_ode_distillation.py            # full run (a few minutes on 2 cores)
    python examples/neural_ode_distillation.py --quick    # a smaller run (~2 minutes)

The system is dx/dt = y/(1+y), dy/dt = -x/(1+x) (a centre at the origin; with initial
conditions in [0, 1]² the orbits stay inside x, y > -0.75, so 1+x and 1+y stay positive).

1. train: a neural ODE (equinox MLP vector field, diffrax Tsit5, optax Adam) on trajectories;
2. regress: sample the learned field at points of the trajectories and `distill` it,
   one formula per output, with + - * / only;
3. choose: for each output, roll out the Pareto formulas near the search's choice in
   place of that output of the network, and keep the simplest that fits the
   trajectories as well as the best of them;
4. fine-tune: swap the formulas in for the MLP (`swap_in`) and fit their constants
   through the ODE solve on the same trajectories;
5. quantise the constants to 0.01 (`quantise_to`) and check the formulas: equal to
   [x1/(x1 + 1), -x0/(x0 + 1)] (full run), or of the form a·x1/(x1 + b), -a·x0/(x0 + b)
   with a, b within `--tolerance` of 1 (`--quick`). Exits with status 1 if not.
"""

from __future__ import annotations

import argparse
import sys
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
import sympy

from symjax_sr import distill, quantise_to, stack_equinox, swap_in, to_equinox

TRUTH = ["x1/(x1 + 1)", "-x0/(x0 + 1)"]
VARS = sympy.symbols("x0 x1")

# Full run and --quick: trajectories, training, sampling, search, fine-tuning.
SETTINGS = {
    "full": dict(n_traj=64, n_times=41, t1=3.0, train_steps=2000, samples=2000,
                 niterations=50, finetune_steps=400),
    "quick": dict(n_traj=32, n_times=21, t1=3.0, train_steps=1000, samples=500,
                  niterations=40, finetune_steps=200),
}

SEARCH = dict(  # small islands, many iterations: finds both fractions on 2 CPU cores
    binary_operators=["+", "-", "*", "/"],
    populations=8,
    population_size=27,
    ncycles_per_iteration=100,
    maxsize=12,
    verbosity=0,
    progress=False,
    temp_equation_file=True,
)


def true_field(t, z, args):
    x, y = z[0], z[1]
    return jnp.stack([y / (1 + y), -x / (1 + x)])


class NeuralODE(eqx.Module):
    """dz/dt = field(z), solved by diffrax at the times `ts` from `z0`."""

    field: eqx.Module

    def __call__(self, z0, ts, *, rtol=1e-4, atol=1e-6):
        term = diffrax.ODETerm(lambda t, z, args: self.field(z))
        sol = diffrax.diffeqsolve(
            term, diffrax.Tsit5(), ts[0], ts[-1], dt0=ts[1] - ts[0], y0=z0,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        )
        return sol.ys


def make_data(key, n_traj, n_times, t1):
    """Trajectories of the true system from initial conditions uniform in [0, 1]²."""
    ts = jnp.linspace(0.0, t1, n_times)
    z0 = jax.random.uniform(key, (n_traj, 2), minval=0.0, maxval=1.0)
    term = diffrax.ODETerm(true_field)

    def one(z):
        return diffrax.diffeqsolve(
            term, diffrax.Tsit5(), 0.0, t1, dt0=0.01, y0=z, saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=1e-7, atol=1e-8), max_steps=100_000,
        ).ys

    return ts, z0, jax.jit(jax.vmap(one))(z0)


class OneReplaced(eqx.Module):
    """The network's field with output `j` given by a formula: one candidate, rolled out."""

    network: eqx.Module
    formula: eqx.Module
    j: int = eqx.field(static=True)

    def __call__(self, z):
        return self.network(z).at[self.j].set(self.formula(z))


def refit(expr, X, target):
    """`expr` with its constants fitted to `target` on `X` (scipy's least squares), so
    that candidates are compared at their best constants: the search's hall of fame may
    hold a structure whose constants it has not fitted yet."""
    consts = sorted(expr.atoms(sympy.Float), key=str)
    cs = sympy.symbols(f"c0:{len(consts)}")
    form = expr.xreplace(dict(zip(consts, cs)))
    f = sympy.lambdify((*VARS, *cs), form, "numpy")

    def residuals(c):
        with np.errstate(all="ignore"):
            return np.nan_to_num(f(*X.T, *c) - target, nan=1e6, posinf=1e6, neginf=-1e6)

    c = np.array([float(v) for v in consts])
    if consts:
        c = scipy.optimize.least_squares(residuals, c).x
    return form.xreplace(dict(zip(cs, map(sympy.Float, c)))), float(np.mean(residuals(c) ** 2))


def choose(model, node, X, z0, ts, ys, *, within=10.0, factor=1.5, most=4):
    """The formula to fine-tune for each output, chosen by the trajectories, not only by
    the field samples (a formula can fit the network's own error on them with an extra
    term). Candidates: the Pareto formulas no more complex than the search's choice,
    constants merged (`canonical`) and refitted to the field samples (`refit`), whose
    loss is within `within`x of the best refitted one (at most `most`, the simplest).
    Each replaces its output of the network's field and is solved from `z0`; the
    simplest whose trajectory MSE is within `factor`x of the best candidate's wins."""
    field = np.asarray(jax.vmap(node.field)(jnp.asarray(X)))
    chosen = []
    for j, (frame, best) in enumerate(zip(model.equations_, model.get_best())):
        rows = frame[frame.complexity <= best.complexity].sort_values("complexity")
        fitted = [(*refit(canonical(e), X, field[:, j]), int(c))
                  for e, c in zip(rows.sympy_format, rows.complexity)]
        best_loss = min(loss for _, loss, _ in fitted)
        scored = []
        for expr, loss, c in [f for f in fitted if f[1] <= within * best_loss][:most]:
            swapped = OneReplaced(node.field, to_equinox(expr, variable_names=["x0", "x1"]), j)
            mse = trajectory_loss(NeuralODE(swapped), z0, ts, ys)
            print(f"  candidate dx{j}/dt = {expr}  (complexity {c}, sample loss {loss:.2e}, "
                  f"trajectory MSE {mse:.2e})")
            scored.append((mse, expr))
        best_mse = min(mse for mse, _ in scored)
        chosen.append(next(expr for mse, expr in scored if mse <= factor * best_mse))
    return chosen


def trajectory_loss(model, z0, ts, ys):
    """Mean squared error of `model`'s solves from `z0 [B, 2]` against `ys [B, T, 2]`."""
    return float(eqx.filter_jit(lambda m: jnp.mean((jax.vmap(m, in_axes=(0, None))(z0, ts) - ys) ** 2))(model))


def fit(model, params_of, set_params, z0, ts, ys, steps, schedule):
    """Adam on the MSE of the solves from `z0` against `ys` over the leaves `params_of(model)`."""
    opt = optax.adam(schedule)

    def loss(p):
        m = set_params(model, p)
        pred = jax.vmap(m, in_axes=(0, None))(z0, ts)
        return jnp.mean((pred - ys) ** 2)

    @jax.jit
    def step(p, state):
        value, grad = jax.value_and_grad(loss)(p)
        updates, state = opt.update(grad, state, p)
        return optax.apply_updates(p, updates), state, value

    p = params_of(model)
    state = opt.init(p)
    for _ in range(steps):
        p, state, _ = step(p, state)
    return set_params(model, p)


def canonical(expr):
    """A `+ - * /` formula as num/den with den's leading coefficient exactly 1 (`cancel`
    merges the constants): no two constants can trade off while fine-tuning, so each
    one settles, and rounds, on its own."""
    num, den = sympy.fraction(sympy.cancel(sympy.together(expr)))
    gens = sorted(expr.free_symbols, key=str)
    if not gens:
        return expr
    poly = sympy.Poly(den, *gens)
    lc = poly.LC()
    lead = sympy.Mul(*(g**k for g, k in zip(gens, poly.monoms()[0])))
    rest = sympy.expand((den - lc * lead) / lc)
    return sympy.expand(num / lc) / (lead + rest)


def structure(expr, var, sign):
    """`(a, b)` when `expr` equals sign·a·var/(var + b) exactly, else None.

    Such a formula is the one whose reciprocal is affine in 1/var: sign/expr = 1/a + (b/a)/var.
    """
    if expr.free_symbols != {var}:
        return None
    u = sympy.Symbol("u", positive=True)
    recip = sympy.cancel(sympy.together(sign / expr.subs(var, 1 / u)))
    try:
        poly = sympy.Poly(recip, u)
    except sympy.PolynomialError:
        return None
    if poly.degree() > 1:
        return None
    c0, c1 = float(poly.coeff_monomial(1)), float(poly.coeff_monomial(u))
    if c0 == 0.0:
        return None
    return 1.0 / c0, c1 / c0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run for CI")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.1,
                        help="--quick: how far from 1 the constants a, b may be")
    args = parser.parse_args(argv)
    cfg = SETTINGS["quick" if args.quick else "full"]
    key_data, key_mlp = jax.random.split(jax.random.key(args.seed))
    times = {}
    start = time.perf_counter()

    # (a) train the neural ODE: through the solver, on the segments between consecutive
    # observations (multiple shooting; whole-trajectory training stalls far from the field)
    t = time.perf_counter()
    ts, z0, ys = make_data(key_data, cfg["n_traj"], cfg["n_times"], cfg["t1"])
    mlp = eqx.nn.MLP(2, 2, width_size=64, depth=2, activation=jnp.tanh, key=key_mlp)
    node = NeuralODE(mlp)
    static = eqx.filter(node, eqx.is_inexact_array, inverse=True)
    starts, ends = ys[:, :-1].reshape(-1, 2), ys[:, 1:].reshape(-1, 2)
    node = fit(
        node, lambda m: eqx.filter(m, eqx.is_inexact_array),
        lambda m, p: eqx.combine(p, static), starts, ts[:2], jnp.stack([starts, ends], 1),
        cfg["train_steps"], optax.cosine_decay_schedule(1e-2, cfg["train_steps"], alpha=0.01),
    )
    train_loss = trajectory_loss(node, z0, ts, ys)
    times["train"] = time.perf_counter() - t
    print(f"train: {cfg['train_steps']} Adam steps on {len(starts)} segments of {cfg['n_traj']} "
          f"trajectories, trajectory MSE {train_loss:.2e}, {times['train']:.1f} s")

    # (b) sample the learned field on the trajectories, (c) regress it
    t = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    states = np.asarray(ys).reshape(-1, 2)
    X = states[rng.choice(len(states), cfg["samples"], replace=False)]
    model = distill(node.field, X, niterations=cfg["niterations"], random_state=args.seed,
                    deterministic=True, **SEARCH)
    times["regress"] = time.perf_counter() - t
    compile_s = sum(info["compile_s"] for info in model.fit_info_)
    search_s = sum(info["wall_s"] for info in model.fit_info_)
    found = model.sympy()
    print(f"regress: {cfg['samples']} samples, {cfg['niterations']} iterations per output, "
          f"{times['regress']:.1f} s (compile {compile_s:.1f} s, search {search_s:.1f} s)")
    for j, e in enumerate(found):
        print(f"  found dx{j}/dt = {e}")

    # (d) each output's formula chosen by its trajectories; the formulas, constants
    # merged, replace the MLP; (e) their constants are fine-tuned through the solve
    t = time.perf_counter()
    picked = choose(model, node, X, z0, ts, ys)
    times["choose"] = time.perf_counter() - t
    for j, e in enumerate(picked):
        print(f"  chosen dx{j}/dt = {e}")
    t = time.perf_counter()
    formulas = stack_equinox(picked, variable_names=["x0", "x1"])
    sym = swap_in(node, lambda m: m.field, formulas, example=jnp.zeros(2, X.dtype))
    sym = fit(
        sym, lambda m: m.field.constants,
        lambda m, c: eqx.tree_at(lambda n: n.field.constants, m, c), z0, ts, ys,
        cfg["finetune_steps"], optax.cosine_decay_schedule(1e-2, cfg["finetune_steps"], alpha=0.01),
    )
    tune_loss = trajectory_loss(sym, z0, ts, ys)
    times["fine-tune"] = time.perf_counter() - t
    print(f"fine-tune: {cfg['finetune_steps']} Adam steps on the constants, trajectory MSE "
          f"{tune_loss:.2e}, {times['fine-tune']:.1f} s")
    for j, e in enumerate(sym.field.sympy()):
        print(f"  tuned dx{j}/dt = {e}")

    # (f) quantise, (g) check
    final = quantise_to(sym.field, 0.01).sympy()
    times["total"] = time.perf_counter() - start
    x0, x1 = sympy.symbols("x0 x1")
    for j, e in enumerate(final):
        print(f"  final dx{j}/dt = {e}")
    print("times: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))

    shapes = [structure(final[0], x1, 1), structure(final[1], x0, -1)]
    if all(s is not None for s in shapes):
        shown = "; ".join(f"a={a:.2f} b={b:.2f}" for a, b in shapes)
        print(f"structure: a*x1/(x1+b), -a*x0/(x0+b) with {shown}")
    else:
        print("structure: NOT of the form a*x1/(x1+b), -a*x0/(x0+b)")
    if args.quick:
        ok = all(s is not None and abs(s[0] - 1) <= args.tolerance and abs(s[1] - 1) <= args.tolerance
                 for s in shapes)
        print(f"check (constants within {args.tolerance} of 1): {'PASS' if ok else 'FAIL'}")
    else:
        truth = [sympy.sympify(s) for s in TRUTH]
        ok = all(sympy.simplify(sympy.nsimplify(e, rational=True) - t_) == 0
                 for e, t_ in zip(final, truth))
        print(f"check (equal to {TRUTH}): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

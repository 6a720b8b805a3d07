"""PySR's regularised evolution as one jitted, batched step over every island.

One call of `iteration` runs `ncycles_per_iteration` cycles (`lax.scan`) on all
islands at once (islands are the leading axis), then simplifies, optimises constants,
updates the hall of fame and migrates, as SymbolicRegression.jl does per iteration.

Within a cycle, each island runs ceil(population_size / tournament_selection_n)
events, as PySR does, but **in parallel** rather than one after another: all events
select parents from the population as it was at the start of the cycle, and the
accepted children then replace the oldest members. Every child of every island is
evaluated in one batch.

An iteration is `draw_batch`, `evolve` and `settle`. With `batching`, `draw_batch` draws
one mini-batch of rows and rescores the population on it; `evolve` compares every child
and fits constants on it (its program depends on the batch size, not on the number of
rows, so fits of any size share it); `settle` scores the population and the best child
of each complexity on every row, for the hall of fame, which only holds full-data losses.
Without batching the batch is the data.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._complexity import mapped_complexity
from ._constants import optimize_constants, population_loss, select_members
from ._constraints import node_costs, satisfies
from ._evaluate import Evaluator, l2_loss
from ._hall_of_fame import HallOfFame, hof_init, hof_update, pareto_mask
from ._islands import ONE, IslandAxis
from ._mutate import (
    MUTATIONS,
    Context,
    Nodes,
    applicable,
    constant_scale,
    constant_weight_scale,
    crossover,
    from_nodes,
    mutate,
    to_nodes,
)
from ._operators import CONST
from ._options import SearchOptions
from ._parametric import used_parameters
from ._random import random_population, random_tree
from ._simplify import simplify
from ._template import sub_slice
from ._tree import Population
from ._units import dimension_violations

__all__ = [
    "SearchState", "SearchData", "Evolved", "init_state", "iteration", "draw_batch", "evolve",
    "settle",
]

_WINDOW = 100_000.0  # PySR's adaptive-parsimony window (counts)
_SIMPLIFY = MUTATIONS.index("simplify")
_RANDOMIZE = MUTATIONS.index("randomize")
_MUTATE_CONSTANT = MUTATIONS.index("mutate_constant")
_BATCH_STREAM = 0xBA7C  # `fold_in` tag of the key that draws an iteration's mini-batch
_FIT_STREAM = 0xF17  # `fold_in` tag of the keys of an iteration's constant fitting
_NEWBORN_STREAM = 0xB0B  # `fold_in` tag of the keys of a chunk's fitting of its children


class SearchData(NamedTuple):
    """The data a search fits. `Xt` may carry zero feature rows beyond the real ones
    (feature buckets, so that similar fits share one compiled search); `n_features`
    is then the real count, and new leaves only draw features below it. `x_dims` and
    `y_dims` are the SI dimensions of the features and the target (`_units.py`): with
    `x_dims`, a candidate that violates them has `dimensional_constraint_penalty` added
    to its loss; `y_dims` None leaves the output's dimensions unchecked."""

    Xt: Float[Array, "features rows"]
    y: Float[Array, " rows"]
    weights: Float[Array, " rows"] | None
    baseline: Float[Array, ""]
    n_features: Int[Array, ""] | None = None
    x_dims: Float[Array, "features 7"] | None = None
    y_dims: Float[Array, " 7"] | None = None


def _live_features(data: SearchData, opts: SearchOptions):
    """How many features new leaves may use: the real count when the data says it."""
    return opts.n_features if data.n_features is None else data.n_features


class GuessPool(NamedTuple):
    """PySR's `guesses` with their constants fitted, kept for migration
    (`fraction_replaced_guesses`)."""

    pop: Population  # [G, L] / [G, K]
    loss: Float[Array, " G"]
    complexity: Float[Array, " G"]


class SearchState(eqx.Module):
    """The whole search, islands first: populations, statistics, hall of fame, key;
    `guesses` when the search was seeded."""

    pop: Population  # [I, P, L] / [I, P, K]
    loss: Float[Array, "I P"]
    cost: Float[Array, "I P"]
    complexity: Float[Array, "I P"]
    birth: Int[Array, "I P"]
    freq: Float[Array, " C"]
    hof: HallOfFame
    key: PRNGKeyArray
    clock: Int[Array, ""]
    iteration: Int[Array, ""]
    guesses: GuessPool | None = None


def _ctx(opts: SearchOptions, n_features) -> Context:
    return Context(
        opts.operators, n_features, opts.const_slots, opts.perturbation_factor,
        opts.probability_negate_constant,
    )


def _cost(loss, complexity, baseline, opts: SearchOptions):
    # times the reciprocal, not divided: XLA turns a division by a scalar into that in
    # some fusions and not in others, and then the rounding depends on the array's shape
    scale = 1.0 / jnp.maximum(baseline, 0.01)
    cost = loss * scale + opts.parsimony * complexity
    return jnp.where(jnp.isfinite(cost), cost, jnp.inf)


def _flat(x):
    return x.reshape((-1,) + x.shape[2:])


def _with_tail(const, full, opts: SearchOptions):
    """`const` (the constants a tree operation returns: `n_sub · const_slots`) followed
    by the parameter values of `full` (a parent's whole table)."""
    if opts.param_slots == 0:
        return const
    return jnp.concatenate([const, full[..., opts.n_sub * opts.const_slots:]], axis=-1)


def _pick_sub(key, opts: SearchOptions):
    """Which sub-tree an event changes: uniform over a template's expressions (as PySR
    mutates one sub-expression), else the tree itself (no key used)."""
    if opts.n_sub == 1:
        return jnp.int32(0)
    return jax.random.randint(key, (), 0, opts.n_sub)


def _arity(k, opts: SearchOptions, n_features):
    """How many variables sub-tree `k` may use: its template arity, else the features."""
    if opts.template is None:
        return n_features
    return jnp.asarray(opts.template.arities, jnp.int32)[k]


def _split(op, arg, const, k, opts: SearchOptions):
    """Sub-tree `k` of one member, as the tree operations take it (the whole tree and
    table without a template)."""
    if opts.template is None:
        return op, arg, const
    Ls, Kc = opts.sub_length, opts.const_slots
    sl = jax.lax.dynamic_slice_in_dim
    return sl(op, k * Ls, Ls), sl(arg, k * Ls, Ls), sl(const, k * Kc, Kc)


def _join(op, arg, const, k, sub, opts: SearchOptions):
    """The member with sub-tree `k` replaced by `sub = (op, arg, const_slots constants)`;
    the other sub-trees and the parameter values stay the member's."""
    s_op, s_arg, s_const = sub
    if opts.template is None:
        return s_op, s_arg, _with_tail(s_const, const, opts)
    Ls, Kc = opts.sub_length, opts.const_slots
    up = jax.lax.dynamic_update_slice_in_dim
    return up(op, s_op, k * Ls, 0), up(arg, s_arg, k * Ls, 0), up(const, s_const, k * Kc, 0)


def _sub_limit(curmaxsize, cplx, s_op, s_arg, opts: SearchOptions):
    """The complexity sub-tree `s_op` may grow to: what the other sub-trees leave of
    `curmaxsize` (a member's complexity is the sum of its sub-trees')."""
    if opts.template is None:
        return curmaxsize
    return curmaxsize - (cplx - jnp.round(node_costs(s_op, s_arg, opts).sum()))


def _per_sub(fn, op, arg, const, opts: SearchOptions):
    """`fn(op, arg, const) -> (op, arg, const_slots constants)` applied to every sub-tree
    of members with any leading shape; parameter values stay."""
    if opts.template is None:
        o, a, c = fn(op, arg, const)
        return o, a, _with_tail(c, const, opts)
    Ls, Kc, S = opts.sub_length, opts.const_slots, opts.n_sub
    outs = [fn(sub_slice(op, k, Ls), sub_slice(arg, k, Ls), sub_slice(const, k, Kc))
            for k in range(S)]
    cat = lambda i: jnp.concatenate([o[i] for o in outs], axis=-1)  # noqa: E731
    return cat(0), cat(1), jnp.concatenate([cat(2), const[..., S * Kc:]], axis=-1)


def _losses(opts: SearchOptions) -> dict:
    """The loss options as `population_loss` and `optimize_constants` take them."""
    return dict(elementwise_loss=opts.elementwise_loss or l2_loss, loss_function=opts.loss_function,
                loss_function_expression=opts.loss_function_expression)


def _data_loss(evaluator: Evaluator, pop: Population, data: SearchData, opts):
    """Loss on the data of a population with any leading shape, as one flat batch."""
    lead = pop.op.shape[:-1]
    flat = Population(pop.op.reshape(-1, pop.op.shape[-1]), pop.arg.reshape(-1, pop.arg.shape[-1]),
                      pop.const.reshape(-1, pop.const.shape[-1]))
    loss = population_loss(evaluator, flat, data.Xt, data.y, data.weights, **_losses(opts))
    return loss.reshape(lead)


def _violates_units(pop: Population, data: SearchData, opts: SearchOptions):
    """Where a member violates the units (False everywhere without `x_dims`)."""
    if data.x_dims is None:
        return jnp.zeros(pop.op.shape[:-1], bool)
    return dimension_violations(pop.op, pop.arg, pop.const, data.x_dims, data.y_dims,
                                opts.operators, opts.dimensionless_constants_only)


def _with_units(loss, pop: Population, data: SearchData, opts: SearchOptions):
    """`loss` plus `dimensional_constraint_penalty` where a member violates the units."""
    if data.x_dims is None:
        return loss
    return jnp.where(_violates_units(pop, data, opts), loss + opts.dimensional_constraint_penalty,
                     loss)


def _evaluate_flat(evaluator: Evaluator, pop: Population, data: SearchData, opts):
    """The search's loss of a population with any leading shape: data loss and units."""
    return _with_units(_data_loss(evaluator, pop, data, opts), pop, data, opts)


def _complexity_of(pop: Population, opts: SearchOptions):
    """Complexity of every expression (any leading shape), from the padded rows directly."""
    if opts.complexity_mapping is not None:
        return mapped_complexity(opts.complexity_mapping, pop.op, pop.arg, opts.operators)
    return jnp.round(node_costs(pop.op, pop.arg, opts).sum(axis=-1))


def baseline_loss(evaluator: Evaluator, data: SearchData, opts: SearchOptions):
    """Loss of the constant 0, PySR's normalisation of the cost (1 if not finite)."""
    K = opts.const_width
    ends = opts.sub_length * jnp.arange(1, opts.n_sub + 1) - 1  # every sub-tree the constant 0
    op = jnp.zeros((1, opts.length), jnp.int32).at[0, ends].set(CONST)
    zero = Population(op, jnp.zeros_like(op), jnp.zeros((1, K), data.Xt.dtype))
    loss = _data_loss(evaluator, zero, data, opts)[0]
    return jnp.where(jnp.isfinite(loss), loss, 1.0)


def _fitted_seeds(key, evaluator: Evaluator, seeds: Population, data: SearchData, opts: SearchOptions):
    """The seeds with their constants fitted, as PySR does for `guesses`."""
    if not opts.constants.enabled:
        return seeds
    return optimize_constants(
        seeds, data.Xt, data.y, data.weights, evaluator=evaluator, key=key, options=opts.constants,
        **_losses(opts),
    ).pop


def _init_size(opts: SearchOptions) -> int:
    """Largest starting tree (PySR starts from ~3 random operators)."""
    return min(opts.maxsize, 7)


def _random_islands(k_pop, opts: SearchOptions, n_live, dtype) -> Population:
    """`init_state`'s random islands of plain expressions."""
    I, P, L, K = opts.populations, opts.population_size, opts.length, opts.const_slots
    return jax.vmap(
        lambda k: random_population(
            k, P, opts.operators, n_live, L, K, min_size=1, max_size=_init_size(opts),
            maxdepth=opts.maxdepth, dtype=dtype,
        )
    )(jax.random.split(k_pop, I))


def init_islands(key, evaluator: Evaluator, n_live: Int[Array, ""], opts: SearchOptions,
                 dtype) -> tuple[Population, PRNGKeyArray]:
    """The first step of `init_state` for plain expressions without guesses: the random
    islands. It does not see the data, so one compiled program serves fits of every number
    of rows; `init_evaluated` finishes on the data. (`evaluator` is unused: the search's
    programs all take it.)"""
    del evaluator
    k_pop, key = jax.random.split(key)
    return _random_islands(k_pop, opts, n_live, dtype), key


def init_evaluated(key, pops: Population, evaluator: Evaluator, data: SearchData,
                   opts: SearchOptions, curmaxsize, guesses: GuessPool | None = None) -> SearchState:
    """The rest of `init_state`: the islands scored on the data, and the hall of fame."""
    I, P, L = opts.populations, opts.population_size, opts.length
    loss = _evaluate_flat(evaluator, pops, data, opts)
    cplx = jax.vmap(lambda p: _complexity_of(p, opts))(pops)
    loss = jnp.where(cplx <= curmaxsize, loss, jnp.inf)
    hof = hof_init(opts.maxsize, L, opts.const_width, data.Xt.dtype)
    hof = hof_update(hof, jax.tree.map(_flat, pops), loss.reshape(-1), cplx.reshape(-1),
                     jnp.ones((I * P,), bool))
    return SearchState(
        pop=pops, loss=loss, cost=_cost(loss, cplx, data.baseline, opts), complexity=cplx,
        birth=jnp.tile(jnp.arange(P, dtype=jnp.int32), (I, 1)),
        freq=jnp.ones((opts.maxsize + 1,), jnp.float32),
        hof=hof, key=key, clock=jnp.int32(P), iteration=jnp.int32(0), guesses=guesses,
    )


def init_state(key, evaluator: Evaluator, data: SearchData, opts: SearchOptions, curmaxsize,
               seeds: Population | None = None) -> SearchState:
    """Random islands of small trees (PySR starts from ~3 random operators), evaluated.
    `seeds` (PySR's `guesses`) replace the first members of every island."""
    I, P, K = opts.populations, opts.population_size, opts.const_slots
    k_pop, key = jax.random.split(key)
    if opts.template is None:
        pops = _random_islands(k_pop, opts, _live_features(data, opts), data.Xt.dtype)
    else:  # each sub-tree small, over its own arguments
        keys = jax.random.split(k_pop, I)
        size = max(1, min(_init_size(opts), opts.maxsize // opts.n_sub))
        subs = [jax.vmap(
            lambda k, a=a, s=s: random_population(
                jax.random.fold_in(k, s), P, opts.operators, a, opts.sub_length, K, min_size=1,
                max_size=size, maxdepth=opts.maxdepth, dtype=data.Xt.dtype,
            )
        )(keys) for s, a in enumerate(opts.template.arities)]
        pops = Population(*(jnp.concatenate([getattr(p, f) for p in subs], axis=-1)
                            for f in ("op", "arg", "const")))
    if opts.param_slots:  # parameter values start as randn, as in SymbolicRegression.jl
        tail = jax.random.normal(jax.random.fold_in(k_pop, 1), (I, P, opts.param_slots), data.Xt.dtype)
        pops = Population(pops.op, pops.arg, jnp.concatenate([pops.const, tail], axis=-1))
    guesses = None
    if seeds is not None:
        k_seed, key = jax.random.split(key)
        fitted = _fitted_seeds(k_seed, evaluator, seeds, data, opts)
        G = fitted.op.shape[0]
        pops = jax.tree.map(lambda a, s: a.at[:, :G].set(jnp.broadcast_to(s, (I,) + s.shape)),
                            pops, fitted)
        guesses = GuessPool(fitted, _evaluate_flat(evaluator, fitted, data, opts),
                            _complexity_of(fitted, opts))
    return init_evaluated(key, pops, evaluator, data, opts, curmaxsize, guesses)


# ----------------------------------------------------------------------------- one cycle


#: Longest vector that `_stable_order` orders by pairwise comparison instead of sorting.
_PAIRWISE_MAX = 64


def _stable_order(a):
    """`jnp.argsort(a)` (stable). Up to `_PAIRWISE_MAX` elements it is computed from
    pairwise comparisons (each element's position is the number of elements before it),
    as on XLA:CPU a sort of a few dozen values costs several microseconds per call."""
    m = a.shape[0]
    if m > _PAIRWISE_MAX:
        return jnp.argsort(a)
    i = jnp.arange(m, dtype=jnp.int32)
    before = (a[:, None] < a[None, :]) | ((a[:, None] == a[None, :]) & (i[:, None] < i[None, :]))
    return jnp.zeros((m,), jnp.int32).at[before.sum(axis=0)].set(i)


def _tournament(key, cost, cplx, freq_norm, opts: SearchOptions):
    """PySR's tournament: n distinct members, rank k chosen with weight p(1-p)^k.

    One uniform draw serves both choices (a split key would be a hash loop per call
    site under `vmap`): the members at the n largest of P uniforms are a uniformly random
    n-subset, and one more uniform picks the rank by inverting the truncated geometric
    distribution. Both orders are `_stable_order`'s (no sort at PySR's sizes)."""
    P = cost.shape[0]
    n = opts.tournament_selection_n
    u = jax.random.uniform(key, (P + 1,))
    members = _stable_order(-u[:P])[:n]  # largest first, ties by index: `top_k`'s order
    adjusted = cost[members]
    if opts.use_frequency_in_tournament:
        c = jnp.clip(cplx[members].astype(jnp.int32), 0, freq_norm.shape[0] - 1)
        adjusted = adjusted * jnp.exp(opts.adaptive_parsimony_scaling * freq_norm[c])
    order = _stable_order(jnp.where(jnp.isnan(adjusted), jnp.inf, adjusted))
    p = opts.tournament_selection_p
    if p >= 1.0:
        return members[order[0]]
    cdf = np.cumsum((1.0 - p) ** np.arange(n))
    cdf = jnp.asarray(cdf / cdf[-1], jnp.float32)
    rank = jnp.minimum((cdf < u[P]).sum(), n - 1)
    return members[order[rank]]


def _param_free(t: Nodes, opts: SearchOptions):
    """`[param_slots]` which parameter values `mutate_constant` may pick: every value of
    a parameter the tree uses, or all of a template's."""
    if opts.template is not None:
        return jnp.ones((opts.param_slots,), bool)
    return jnp.repeat(_used_params(t, opts), opts.n_categories)


def _used_params(t: Nodes, opts: SearchOptions):
    """`[n_params]` which parameters a parametric tree uses (`Nodes` pad with opcode 0)."""
    return used_parameters(t.op, t.arg, opts.n_features - opts.n_params, opts.n_params)


def _n_param_values(t: Nodes, opts: SearchOptions):
    """How many parameter values a tree's `mutate_constant` may pick from."""
    return _param_free(t, opts).sum()


def _choose_mutation(key, t: Nodes, ctx: Context, opts: SearchOptions, curmaxsize, cplx):
    w = jnp.asarray(opts.mutation_weights.as_tuple(), jnp.float32)
    app = applicable(t, ctx, curmaxsize, cplx >= curmaxsize)
    if opts.param_slots:  # a parameter value is a constant to `mutate_constant`, as in SR.jl
        n = (t.op == CONST).sum() + _n_param_values(t, opts)
        w = w.at[0].multiply(jnp.minimum(8, n) / 8.0)
        app = app.at[0].set(n > 0)
    else:
        w = w.at[0].multiply(constant_weight_scale(t))
    if not opts.should_simplify:
        w = w.at[_SIMPLIFY].set(0.0)
    w = jnp.where(app, w, 0.0)
    w = jnp.where(w.sum() > 0, w, jnp.zeros_like(w).at[MUTATIONS.index("do_nothing")].set(1.0))
    return jax.random.categorical(key, jnp.log(w))


def _finish(t: Nodes, opts: SearchOptions, curmaxsize, fits):
    """Right-align a candidate and check every constraint."""
    op, arg, const, nconst_ok = from_nodes(t, opts.const_slots)
    ok = fits & satisfies(t, opts, curmaxsize, nconst_ok)
    return op, arg, const, ok


def _first_valid(ops, args, consts, oks):
    i = jnp.argmax(oks)
    return ops[i], args[i], consts[i], oks.any()


def _event(key, pop_i: Population, cost_i, cplx_i, freq_norm, temperature, curmaxsize, opts,
           n_features):
    """One regularised-evolution event on one island: parents, and the mutated child.

    Crossover children are made afterwards, for the events that chose crossover only
    (`_crossovers`), so that the rare crossover costs nothing on every other event.
    """
    k_t1, k_t2, k_kind, k_mut, k_is = jax.random.split(key, 5)
    a = _tournament(k_t1, cost_i, cplx_i, freq_norm, opts)
    b = _tournament(k_t2, cost_i, cplx_i, freq_norm, opts)
    member = (pop_i.op[a], pop_i.arg[a], pop_i.const[a])
    sub = _pick_sub(jax.random.fold_in(k_kind, 1), opts)
    s_op, s_arg, s_const = _split(*member, sub, opts)
    limit = _sub_limit(curmaxsize, cplx_i[a], s_op, s_arg, opts)
    ctx = _ctx(opts, _arity(sub, opts, n_features))
    ta = to_nodes(s_op, s_arg, s_const)
    kind = _choose_mutation(k_kind, ta, ctx, opts, limit, cplx_i[a] - curmaxsize + limit)

    def attempt_mutation(k):
        child, fits = mutate(k, kind, ta, ctx, temperature, limit)
        op, arg, const, ok = _finish(child, opts, limit, fits)
        return _join(*member, sub, (op, arg, const), opts) + (ok,)

    if opts.mutation_attempts == 1:
        m_op, m_arg, m_const, m_ok = attempt_mutation(k_mut)
    else:
        keys = jax.random.split(k_mut, opts.mutation_attempts)
        m_op, m_arg, m_const, m_ok = _first_valid(*jax.vmap(attempt_mutation)(keys))
    if opts.param_slots:
        m_op, m_arg, m_const, m_ok = _mutate_parameter(
            jax.random.fold_in(k_mut, 1), kind, ta, pop_i.op[a], pop_i.arg[a], pop_i.const[a],
            (m_op, m_arg, m_const, m_ok), temperature, opts)
    is_cx = jax.random.bernoulli(k_is, opts.crossover_probability)
    return (m_op, m_arg, m_const), m_ok, is_cx, a, b, kind


def _mutate_parameter(key, kind, t: Nodes, op, arg, const, child, temperature, opts: SearchOptions):
    """`mutate_constant` of a member with parameter values (parametric or template): with
    the share of parameter values among its constants, it scales one it may pick
    (PySR's factor and sign) instead of a constant; the tree stays the parent's."""
    k_pick, k_which, k_u, k_up, k_neg = jax.random.split(key, 5)
    K = opts.const_slots
    n_const = (t.op == CONST).sum()
    n_par = _n_param_values(t, opts)
    use = (kind == _MUTATE_CONSTANT) & (jax.random.uniform(k_pick) * (n_const + n_par) >= n_const)
    free = _param_free(t, opts)
    slot = jax.random.categorical(k_which, jnp.where(free, 0.0, -jnp.inf))
    scale = constant_scale(jax.random.uniform(k_u, dtype=const.dtype), jax.random.bernoulli(k_up),
                           jax.random.bernoulli(k_neg, opts.probability_negate_constant),
                           opts.perturbation_factor, temperature)
    scaled = const.at[opts.n_sub * K + slot].multiply(scale.astype(const.dtype))
    c_op, c_arg, c_const, c_ok = child
    return (jnp.where(use, op, c_op), jnp.where(use, arg, c_arg),
            jnp.where(use, scaled, c_const), jnp.where(use, True, c_ok))


def rare_capacity(opts: SearchOptions, probability: float) -> int:
    """Slots per cycle for an event kind of this probability: mean + 4 standard deviations."""
    n = opts.populations * opts.events_per_cycle
    m = n * probability
    return max(1, min(n, int(np.ceil(m + 4 * np.sqrt(m))) + 1))


def crossover_capacity(opts: SearchOptions) -> int:
    return rare_capacity(opts, opts.crossover_probability)


def randomize_capacity(opts: SearchOptions) -> int:
    w = opts.mutation_weights.as_tuple()
    return rare_capacity(opts, w[_RANDOMIZE] / sum(w))


def _compact(flag, C):
    """Indices of the first `C` True entries of `flag` (flattened), and which are real."""
    flat = flag.reshape(-1)
    order = jnp.argsort(~flat, stable=True)[:C]
    return order, flat[order]


def _scatter_back(x, order, chosen, shape, fill=0):
    """Values for the compacted entries `order`, scattered back to `shape` (fill elsewhere)."""
    n = int(np.prod(shape))
    dest = jnp.where(chosen, order, n)
    base = jnp.full((n,) + x.shape[1:], fill, x.dtype)
    return base.at[dest].set(x, mode="drop").reshape(tuple(shape) + x.shape[1:])


def _randomized(key, is_rand, curmaxsize, opts: SearchOptions, dtype, n_features):
    """Random trees (sizes uniform in 1..curmaxsize) for the events that chose `randomize`;
    a template member gets every sub-tree anew, each up to its share of curmaxsize."""
    # a rare event (PySR's weight 0.0005 of ~8): the draws, a loop over nodes per slot,
    # run only in a cycle that has one; otherwise they give zeros and no valid child
    draw = functools.partial(_draw_random, key, is_rand, curmaxsize, opts, dtype, n_features)
    zeros = lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(draw))  # noqa: E731
    return jax.lax.cond(is_rand.any(), draw, zeros)


def _draw_random(key, is_rand, curmaxsize, opts: SearchOptions, dtype, n_features):
    C = randomize_capacity(opts)
    order, chosen = _compact(is_rand, C)
    k_size, k_tree = jax.random.split(key)
    limit = jnp.maximum(curmaxsize // opts.n_sub, 1)
    arities = (n_features,) if opts.template is None else opts.template.arities
    parts = []
    for s, a in enumerate(arities):
        ks = jax.random.fold_in(k_size, s) if s else k_size
        kt = jax.random.fold_in(k_tree, s) if s else k_tree
        sizes = jax.random.randint(ks, (C,), 1, limit + 1)
        op, arg, const = jax.vmap(
            lambda k, n, a=a: random_tree(k, n, opts.operators, a, opts.sub_length,
                                          opts.const_slots, dtype)
        )(jax.random.split(kt, C), sizes)
        nodes = jax.vmap(to_nodes)(op, arg, const)
        parts.append(jax.vmap(lambda t: _finish(t, opts, limit, jnp.bool_(True)))(nodes))
    op, arg, const = (jnp.concatenate([p[i] for p in parts], axis=-1) for i in range(3))
    ok = jnp.stack([p[3] for p in parts]).all(axis=0)
    shape = is_rand.shape
    child = tuple(_scatter_back(x, order, chosen, shape) for x in (op, arg, const))
    return child, _scatter_back(ok & chosen, order, chosen, shape, False)


def _crossovers(key, ma, mb, ca, cb, is_cx, curmaxsize, opts, n_features):
    """Children of the (up to `crossover_capacity`) events that chose crossover (of the
    same sub-tree of both parents, for templates). `ma`, `mb` are every event's two
    parents `(op, arg, const)` `[I, E, ...]`, `ca`, `cb` their complexities.

    Returns both children per event `[I, E]`, with `ok` False for events without
    crossover or beyond the capacity (those are then skipped, like a failed mutation).
    """
    I, E = is_cx.shape
    C = crossover_capacity(opts)
    order, chosen = _compact(is_cx, C)
    key, k_sub = jax.random.split(key) if opts.n_sub > 1 else (key, key)
    subs = jax.vmap(lambda k: _pick_sub(k, opts))(jax.random.split(k_sub, C))

    def one(k, sub, ma, mb, ca, cb):
        sa, sb = _split(*ma, sub, opts), _split(*mb, sub, opts)
        lim_a = _sub_limit(curmaxsize, ca, sa[0], sa[1], opts)
        lim_b = _sub_limit(curmaxsize, cb, sb[0], sb[1], opts)
        ctx = _ctx(opts, _arity(sub, opts, n_features))
        ta, tb = to_nodes(*sa), to_nodes(*sb)

        def attempt(kk):
            c1, c2, fits = crossover(kk, ta, tb, ctx)
            o1, a1, k1_, ok1 = _finish(c1, opts, lim_a, fits)
            o2, a2, k2_, ok2 = _finish(c2, opts, lim_b, fits)
            return _join(*ma, sub, (o1, a1, k1_), opts) + _join(*mb, sub, (o2, a2, k2_), opts) + (
                ok1 & ok2,)

        if opts.mutation_attempts == 1:
            return attempt(k)
        cx = jax.vmap(attempt)(jax.random.split(k, opts.mutation_attempts))
        i = jnp.argmax(cx[6])
        return tuple(x[i] for x in cx[:6]) + (cx[6].any(),)

    pick = lambda m: tuple(_flat(x)[order] for x in m)  # noqa: E731
    o1, a1, c1, o2, a2, c2, ok = jax.vmap(one)(jax.random.split(key, C), subs, pick(ma), pick(mb),
                                               _flat(ca)[order], _flat(cb)[order])

    def back(x, fill=0):
        return _scatter_back(x, order, chosen, (I, E), fill)

    child1 = (back(o1), back(a1), back(c1))
    child2 = (back(o2), back(a2), back(c2))
    return child1, child2, back(ok & chosen, False)


def _cycle(carry, temperature, *, evaluator, bdata, opts, curmaxsize, freq_norm,
           ax: IslandAxis = ONE):
    """One cycle on every island. Children are scored on `bdata`: the data, or with
    batching the iteration's mini-batch; `freq_norm [C]` is the iteration's normalised
    complexity frequencies. Returns the evaluations done on those rows."""
    state, *seen = carry  # `seen`: with batching, the best children per complexity
    I, P = state.loss.shape  # this device's islands
    Ig = I * ax.size
    E = opts.events_per_cycle
    key, k_ev, k_acc, _, k_cx, k_rand = jax.random.split(state.key, 6)
    nf = _live_features(bdata, opts)

    def island_events(ks, pop_i, cost_i, cplx_i):
        return jax.vmap(
            lambda kk: _event(kk, pop_i, cost_i, cplx_i, freq_norm, temperature, curmaxsize, opts,
                              nf)
        )(ks)

    # every event's key in one split (each split site is a hash loop of its own)
    mut, m_ok, is_cx, parent, other, kind = jax.vmap(island_events)(
        ax.local(jax.random.split(k_ev, (Ig, E))), state.pop, state.cost, state.complexity)
    is_rand = kind == _RANDOMIZE
    # the rare events are compacted over all islands: every device makes all of them
    r_child, r_ok = _randomized(k_rand, ax.gather(is_rand), curmaxsize, opts,
                                state.pop.const.dtype, nf)
    r_child, r_ok = tuple(ax.local(x) for x in r_child), ax.local(r_ok)
    r_child = r_child[:2] + (_with_tail(r_child[2], mut[2], opts),)  # the parent's parameters
    mut = tuple(jnp.where(is_rand[..., None], r, m) for r, m in zip(r_child, mut))
    m_ok = jnp.where(is_rand, r_ok, m_ok)
    pick = lambda x, i: jnp.take_along_axis(x, i.reshape(i.shape + (1,) * (x.ndim - 2)), axis=1)  # noqa: E731
    members = (state.pop.op, state.pop.arg, state.pop.const)
    ma, mb = (ax.gather_tree(tuple(pick(x, i) for x in members)) for i in (parent, other))
    ca, cb = (ax.gather(pick(state.complexity, i)) for i in (parent, other))
    x1, x2, x_ok = _crossovers(k_cx, ma, mb, ca, cb, ax.gather(is_cx), curmaxsize, opts, nf)
    x1, x2, x_ok = tuple(ax.local(x) for x in x1), tuple(ax.local(x) for x in x2), ax.local(x_ok)
    c1 = tuple(jnp.where(is_cx[..., None], x, m) for x, m in zip(x1, mut))
    c2 = x2
    ok1 = jnp.where(is_cx, x_ok, m_ok)
    ok2 = x_ok
    # children [I, 2E]
    cop = jnp.concatenate([c1[0], c2[0]], axis=1)
    carg = jnp.concatenate([c1[1], c2[1]], axis=1)
    cconst = jnp.concatenate([c1[2], c2[2]], axis=1)
    cvalid = jnp.concatenate([ok1, ok2], axis=1)
    children = Population(cop, carg, cconst)

    closs = _evaluate_flat(evaluator, children, bdata, opts)
    ccplx = jax.vmap(lambda p: _complexity_of(p, opts))(children)
    closs = jnp.where(cvalid, closs, jnp.inf)
    ccost = _cost(closs, ccplx, bdata.baseline, opts)
    n_evals = ax.total(cvalid.sum())
    hof = state.hof
    g = ax.gather_tree((children, closs, ccplx, cvalid))
    g = (jax.tree.map(_flat, g[0]),) + tuple(x.reshape(-1) for x in g[1:])
    if seen:
        # mini-batch losses are not the hall of fame's: the best child of each complexity
        # (on its batch) is kept aside, and the iteration end scores it on every row
        # (PySR's `best_seen`); without it a child found mid-iteration is lost once it ages out
        seen = [hof_update(seen[0], *g)]
    else:
        hof = hof_update(hof, *g)

    # acceptance of mutations (annealing and frequency ratio); crossovers always
    parent_cost = jnp.take_along_axis(state.cost, parent, axis=1)
    parent_cplx = jnp.take_along_axis(state.complexity, parent, axis=1)
    prob = jnp.ones_like(parent_cost)
    if opts.annealing:
        delta = ccost[:, :E] - parent_cost
        prob = jnp.where(delta <= 0, 1.0, jnp.exp(-delta / (temperature * opts.alpha)))
    if opts.use_frequency:
        C = freq_norm.shape[0]

        def f(cx):
            ci = cx.astype(jnp.int32)
            inside = (ci > 0) & (ci < C)
            return jnp.where(inside, freq_norm[jnp.clip(ci, 0, C - 1)], 1e-6)

        prob = prob * f(parent_cplx) / f(ccplx[:, :E])
    accept_mut = (prob >= ax.local(jax.random.uniform(k_acc, (Ig,) + prob.shape[1:]))) & ok1
    accept = jnp.concatenate([jnp.where(is_cx, ok1, accept_mut), ok2], axis=1)
    if not opts.skip_mutation_failures:
        # a failed or rejected mutation still replaces the oldest, by a copy of its parent
        fail = ~is_cx & ~accept_mut
        pick = lambda x: jnp.take_along_axis(x, parent[..., None], axis=1)  # noqa: E731
        cop = cop.at[:, :E].set(jnp.where(fail[..., None], pick(state.pop.op), cop[:, :E]))
        carg = carg.at[:, :E].set(jnp.where(fail[..., None], pick(state.pop.arg), carg[:, :E]))
        cconst = cconst.at[:, :E].set(jnp.where(fail[..., None], pick(state.pop.const), cconst[:, :E]))
        parent_loss = jnp.take_along_axis(state.loss, parent, axis=1)
        closs = closs.at[:, :E].set(jnp.where(fail, parent_loss, closs[:, :E]))
        ccplx = ccplx.at[:, :E].set(jnp.where(fail, parent_cplx, ccplx[:, :E]))
        ccost = ccost.at[:, :E].set(jnp.where(fail, parent_cost, ccost[:, :E]))
        accept = accept.at[:, :E].set(accept[:, :E] | fail)

    # accepted children replace the oldest members
    order = jnp.argsort(state.birth, axis=1)
    rank = jnp.cumsum(accept, axis=1) - 1
    dest = jnp.where(accept, jnp.take_along_axis(order, jnp.clip(rank, 0, P - 1), axis=1), P)
    births = state.clock + jnp.arange(2 * E, dtype=jnp.int32)[None, :]

    def scatter(base, new):
        return jax.vmap(lambda b, d, v: b.at[d].set(v, mode="drop"))(base, dest, new)

    pop = Population(scatter(state.pop.op, cop), scatter(state.pop.arg, carg),
                     scatter(state.pop.const, cconst))
    new_state = SearchState(
        pop=pop,
        loss=scatter(state.loss, closs),
        cost=scatter(state.cost, ccost),
        complexity=scatter(state.complexity, ccplx),
        birth=scatter(state.birth, jnp.broadcast_to(births, accept.shape)),
        freq=state.freq,
        hof=hof,
        key=key,
        clock=state.clock + 2 * E,
        iteration=state.iteration,
        guesses=state.guesses,
    )
    return (new_state, *seen), n_evals


# ------------------------------------------------------------------------- end of iteration


def _fit_selected(flat: Population, loss, mask, key, copts, expected: float, evaluator, bdata,
                  opts: SearchOptions, ax: IslandAxis = ONE):
    """`optimize_constants` on the members `mask` selects among all islands' (`flat`,
    gathered; each device fits its share), on `bdata`, in a fixed-size batch of twice the
    `expected` number of selected members (plus 4)."""
    capacity = max(1, min(loss.shape[0], int(2 * expected) + 4))
    return optimize_constants(
        flat, bdata.Xt, bdata.y, bdata.weights, evaluator=evaluator, key=key, options=copts,
        mask=mask, loss_before=loss, capacity=capacity, axis=ax, **_losses(opts),
    )


def _local_islands(x, I: int, P: int, ax: IslandAxis = ONE):
    """A gathered, flat per-member array as this device's `[I, P, ...]` islands."""
    return ax.local(x).reshape((I, P) + x.shape[1:])


def newborn_chunks(opts: SearchOptions) -> int:
    """How many chunks `evolve` runs an iteration's cycles in, each followed by a fit of
    its children (`ConstantOptions.newborn_every`): the divisor of `ncycles_per_iteration`
    nearest to it over `newborn_every` (static; 0: no fit). Chunks of equal length keep
    one traced cycle, and the iteration's cycle count stays PySR's."""
    every, n = opts.constants.newborn_every, opts.ncycles_per_iteration
    if not (opts.constants.enabled and every > 0 and opts.constants.newborn_probability > 0):
        return 0
    return min((k for k in range(1, n + 1) if n % k == 0), key=lambda k: (abs(k - n / every), k))


def _fit_newborn(carry, start, *, evaluator, bdata, opts, cycles: int, ax: IslandAxis = ONE):
    """Fit the constants of a share (`newborn_probability`) of the members born since
    clock `start` (`newborn_every`), with `newborn_iterations` iterations from one start,
    on `bdata`; an improved member keeps its new constants and enters the hall of fame
    (with batching: the iteration's best children). Members that violate the units are
    left alone: their cycle loss carries the penalty, the optimiser compares data losses.
    Returns the carry and the evaluations done on those rows."""
    state, *seen = carry
    copts = opts.constants
    I, P = state.loss.shape
    Ig = I * ax.size
    k_mask, k_opt = jax.random.split(jax.random.fold_in(state.key, _NEWBORN_STREAM))
    flat = ax.gather_tree(jax.tree.map(_flat, state.pop))
    loss = ax.gather(state.loss.reshape(-1))
    fit_opts = dataclasses.replace(copts, probability=copts.newborn_probability,
                                   iterations=copts.newborn_iterations, nrestarts=0)
    mask = (select_members(flat, fit_opts, key=k_mask, evaluator=evaluator)
            & (ax.gather(state.birth.reshape(-1)) >= start) & jnp.isfinite(loss)
            & ~_violates_units(flat, bdata, opts))
    born = Ig * min(P, 2 * opts.events_per_cycle * cycles)  # at most, alive at the chunk's end
    res = _fit_selected(flat, loss, mask, k_opt, fit_opts, copts.newborn_probability * born,
                        evaluator, bdata, opts, ax)
    g_loss = jnp.where(res.improved, _with_units(res.loss, res.pop, bdata, opts), loss)
    g_cplx = ax.gather(state.complexity.reshape(-1))
    if seen:
        seen = [hof_update(seen[0], res.pop, g_loss, g_cplx, res.improved)]
        hof = state.hof
    else:
        hof = hof_update(state.hof, res.pop, g_loss, g_cplx, res.improved)
    pop = jax.tree.map(lambda x: _local_islands(x, I, P, ax), res.pop)
    new_loss = _local_islands(g_loss, I, P, ax)
    state = eqx.tree_at(
        lambda s: (s.pop, s.loss, s.cost, s.hof), state,
        (pop, new_loss, _cost(new_loss, state.complexity, bdata.baseline, opts), hof))
    return (state, *seen), res.n_evals


def _migrate(key, pop, loss, cost, cplx, birth, clock, pool, pool_loss, pool_cplx, pool_ok,
             frac, data, opts, ax: IslandAxis = ONE):
    """Replace Poisson(P * frac) random members of each island with random pool members
    (the pool is the same on every device)."""
    I, P = loss.shape
    Ig = I * ax.size
    k_n, k_pos, k_pick = jax.random.split(key, 3)
    # Binomial(P, frac): PySR draws Poisson(P * frac); same mean, and bounded by P.
    num = ax.local(jax.random.bernoulli(k_n, frac, (Ig, P))).sum(axis=1)
    num = jnp.where(pool_ok.any(), num, 0)
    pos = jax.vmap(lambda k: jax.random.permutation(k, P))(ax.local(jax.random.split(k_pos, Ig)))
    logits = jnp.where(pool_ok, 0.0, -jnp.inf)
    pick = ax.local(jax.random.categorical(k_pick, logits, shape=(Ig, P)))
    use = jnp.arange(P)[None, :] < num[:, None]
    dest = jnp.where(use, pos, P)

    def scatter(base, new):
        return jax.vmap(lambda b, d, v: b.at[d].set(v, mode="drop"))(base, dest, new)

    new_pop = Population(scatter(pop.op, pool.op[pick]), scatter(pop.arg, pool.arg[pick]),
                         scatter(pop.const, pool.const[pick]))
    # the cost of the pool, not of the picks: the same shapes on any device count, so
    # the same rounding
    pool_cost = _cost(pool_loss, pool_cplx, data.baseline, opts)
    return (
        new_pop,
        scatter(loss, pool_loss[pick]),
        scatter(cost, pool_cost[pick]),
        scatter(cplx, pool_cplx[pick]),
        scatter(birth, jnp.broadcast_to(clock, (I, P)).astype(birth.dtype)),
    )


def _move_window(freq: Float[Array, " C"]) -> Float[Array, " C"]:
    """PySR's window on the frequency counts: above `_WINDOW` counts in all, the same
    amount comes off every count above 1 (none goes below 1) until `_WINDOW` remain."""
    def taken(t):  # every count above 1 less `t`, floored at 1
        return jnp.where(freq > 1, jnp.maximum(freq - t, 1.0), freq)

    def halve(_, lohi):  # bisection on the amount taken off: the total falls with it
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        big = taken(mid).sum() > _WINDOW
        return jnp.where(big, mid, lo), jnp.where(big, hi, mid)

    _, t = jax.lax.fori_loop(0, 60, halve, (jnp.zeros((), freq.dtype), freq.max()))
    return jnp.where(freq.sum() > _WINDOW, taken(t), freq)


class Evolved(NamedTuple):
    """What the cycles and the constant fitting of an iteration (`evolve`) hand to its
    end (`settle`): the search's state after the cycles, and the population after
    simplification and constant fitting."""

    state: SearchState
    seen: HallOfFame | None  # with batching: the best child per complexity, batch losses
    pop: Population
    loss: Float[Array, "I P"]  # without batching, or a batch of every row: data losses
    birth: Int[Array, "I P"]
    n_evals: Float[Array, ""]


def whole_batch(data: SearchData, opts: SearchOptions) -> bool:
    """Whether a batched search's batch is every row: `run_search` pads a search of at
    most `batch_size` rows to exactly `batch_size` (weight 0), and only such a search has
    that many; its losses on the batch are its full-data losses (static: shapes only)."""
    return opts.batching and data.Xt.shape[1] == opts.batch_size


def draw_batch(
    state: SearchState, evaluator: Evaluator, data: SearchData, opts: SearchOptions,
    ax: IslandAxis = ONE,
) -> tuple[SearchState, SearchData, Float[Array, ""]]:
    """With `batching`: the iteration's mini-batch, and the population rescored on it, so
    that every comparison of the iteration is on the same rows. (PySR draws a batch per
    evaluation; selection then favours members whose loss was drawn on a lucky batch.)
    Without it, or where the batch is every row (`whole_batch`): the data itself. Returns
    the state, the rows and the evaluations done."""
    if not opts.batching or whole_batch(data, opts):
        return state, data, jnp.asarray(0.0, data.Xt.dtype)
    n = data.Xt.shape[1]
    idx = jax.random.randint(jax.random.fold_in(state.key, _BATCH_STREAM), (opts.batch_size,), 0, n)
    # unit weights where the data has none: the batch then has the structure of a fit's
    # that runs on all its (padded) rows as the batch, and both share `evolve`'s program
    weights = jnp.ones((opts.batch_size,), data.Xt.dtype) if data.weights is None else \
        data.weights[idx]
    bdata = data._replace(Xt=data.Xt[:, idx], y=data.y[idx], weights=weights)
    loss = jnp.where(jnp.isfinite(state.loss), _evaluate_flat(evaluator, state.pop, bdata, opts),
                     jnp.inf)
    state = eqx.tree_at(lambda s: (s.loss, s.cost), state,
                        (loss, _cost(loss, state.complexity, data.baseline, opts)))
    return state, bdata, jnp.asarray(state.loss.size * ax.size * opts.batch_size / n, data.Xt.dtype)


def evolve(
    state: SearchState,
    evaluator: Evaluator,
    bdata: SearchData,
    opts: SearchOptions,
    curmaxsize: Int[Array, ""],
    ax: IslandAxis = ONE,
) -> Evolved:
    """The cycles of an iteration, then simplification and constant fitting, all on
    `bdata` (`draw_batch`'s rows). With `batching` its program depends on the batch size
    only, not on the number of rows: fits of any size share it (PySR fits constants on
    a batch too)."""
    I, P = state.loss.shape
    Ig = I * ax.size
    if opts.annealing:
        temps = jnp.linspace(1.0, 0.0, opts.ncycles_per_iteration)
    else:
        temps = jnp.ones((opts.ncycles_per_iteration,))
    # PySR normalises the frequencies once per iteration: every cycle sees the same
    freq_norm = state.freq / state.freq.sum()
    body = lambda c, t: _cycle(c, t, evaluator=evaluator, bdata=bdata, opts=opts,  # noqa: E731
                               curmaxsize=curmaxsize, freq_norm=freq_norm, ax=ax)
    seen = [hof_init(opts.maxsize, opts.length, opts.const_width, bdata.Xt.dtype)
            ] if opts.batching else []
    chunks = newborn_chunks(opts)
    if chunks == 0:
        (state, *seen), cycle_evals = jax.lax.scan(body, (state, *seen), temps)
    else:
        length = opts.ncycles_per_iteration // chunks

        def chunk(carry, chunk_temps):
            start = carry[0].clock
            carry, evals = jax.lax.scan(body, carry, chunk_temps)
            carry, fit_evals = _fit_newborn(carry, start, evaluator=evaluator, bdata=bdata,
                                            opts=opts, cycles=length, ax=ax)
            return carry, evals.sum() + fit_evals

        (state, *seen), cycle_evals = jax.lax.scan(chunk, (state, *seen),
                                                   temps.reshape(chunks, length))
    n_evals = cycle_evals.sum()

    k_opt, k_mask = jax.random.split(jax.random.fold_in(state.key, _FIT_STREAM))
    pop = state.pop
    if opts.should_simplify:
        def simplified(op, arg, const):
            nodes = jax.vmap(jax.vmap(to_nodes))(op, arg, const)
            nodes = jax.vmap(jax.vmap(lambda t: simplify(t, opts.operators)))(nodes)
            return jax.vmap(jax.vmap(lambda t: from_nodes(t, opts.const_slots)))(nodes)[:3]

        pop = Population(*_per_sub(simplified, pop.op, pop.arg, pop.const, opts))
    if opts.batching or bdata.x_dims is not None:
        # the optimiser compares data losses: a cycle's losses carry the units penalty, and
        # with batching the simplified members are compared on the batch again
        loss = _data_loss(evaluator, pop, bdata, opts)
        n_evals = n_evals + Ig * P
    else:
        # a member's loss holds through simplification, which only widens where an
        # expression is finite (PySR's finalize_scores re-evaluates with batching only);
        # one evaluator fewer in the iteration's program, ~7% fewer evaluations
        loss = state.loss
    birth = state.birth
    copts = opts.constants
    if copts.enabled and copts.probability > 0:
        flat = ax.gather_tree(jax.tree.map(_flat, pop))
        mask = select_members(flat, copts, key=k_mask, evaluator=evaluator)
        res = _fit_selected(flat, ax.gather(loss.reshape(-1)), mask, k_opt, copts,
                            copts.probability * Ig * P, evaluator, bdata, opts, ax)
        pop = jax.tree.map(lambda x: _local_islands(x, I, P, ax), res.pop)
        loss = _local_islands(res.loss, I, P, ax)
        # PySR resets the age of improved members
        birth = jnp.where(_local_islands(res.improved, I, P, ax), state.clock, birth)
        n_evals = n_evals + res.n_evals
    return Evolved(state, seen[0] if seen else None, pop, loss, birth, n_evals)


def settle(
    evolved: Evolved,
    evaluator: Evaluator,
    data: SearchData,
    opts: SearchOptions,
    ax: IslandAxis = ONE,
) -> tuple[SearchState, Float[Array, ""]]:
    """The end of an iteration on every row: with `batching` the population and the
    cycles' best children are scored on all of them (unless the batch was every row); then
    the hall of fame, migration and the new state. Returns it and the evaluations done."""
    state, pop, loss, birth = evolved.state, evolved.pop, evolved.loss, evolved.birth
    I, P = state.loss.shape
    Ig = I * ax.size
    # `evolve` counted evaluations on its rows: a batch's stand for a fraction of one
    n_evals = evolved.n_evals * (opts.batch_size / data.Xt.shape[1] if opts.batching else 1.0)
    hof = state.hof
    if evolved.seen is not None:  # the batch winners, scored on every row for the hall of fame
        best = evolved.seen
        C = best.loss.shape[0]
        if whole_batch(data, opts):  # batch losses are full-data losses: nothing to rescore
            best_loss = best.loss
        else:
            best_loss = _evaluate_flat(evaluator, best.population, data, opts)
            n_evals = n_evals + best.exists.sum()
            # the members' losses (batch losses after the constant fitting) on every row
            loss = _data_loss(evaluator, pop, data, opts)
            n_evals = n_evals + Ig * P
        hof = hof_update(hof, best.population, best_loss, jnp.arange(C, dtype=best_loss.dtype),
                         best.exists)
    key, k_mig, k_hof = jax.random.split(state.key, 3)
    cplx = jax.vmap(lambda p: _complexity_of(p, opts))(pop)
    loss = _with_units(loss, pop, data, opts)
    cost = _cost(loss, cplx, data.baseline, opts)
    g_pop, g_loss, g_cplx = ax.gather_tree(
        (jax.tree.map(_flat, pop), loss.reshape(-1), cplx.reshape(-1)))
    hof = hof_update(hof, g_pop, g_loss, g_cplx, jnp.ones((Ig * P,), bool))
    # PySR counts the complexity of every member an island returns (before migration);
    # counts are whole numbers, so their sum does not depend on the order (or devices)
    C = state.freq.shape[0]
    c = g_cplx.astype(jnp.int32)
    inside = (c >= 1) & (c < C)
    counts = jnp.bincount(jnp.where(inside, c, 0), weights=inside.astype(state.freq.dtype), length=C)
    freq = _move_window(state.freq + counts)

    if opts.migration:
        top = jnp.argsort(jnp.where(jnp.isnan(cost), jnp.inf, cost), axis=1)[:, : opts.topn]
        take = lambda x: ax.gather(_flat(jnp.take_along_axis(x, top.reshape(top.shape + (1,) * (x.ndim - 2)), axis=1)))  # noqa: E731
        pool = Population(take(pop.op), take(pop.arg), take(pop.const))
        pool_loss, pool_cplx = take(loss), take(cplx)
        pop, loss, cost, cplx, birth = _migrate(
            k_mig, pop, loss, cost, cplx, birth, state.clock, pool, pool_loss, pool_cplx,
            jnp.isfinite(pool_loss), opts.fraction_replaced, data, opts, ax)
    if opts.hof_migration:
        front = pareto_mask(hof)
        hof_cplx = jnp.arange(hof.loss.shape[0], dtype=jnp.float32)
        pop, loss, cost, cplx, birth = _migrate(
            k_hof, pop, loss, cost, cplx, birth, state.clock, hof.population, hof.loss, hof_cplx,
            front, opts.fraction_replaced_hof, data, opts, ax)
    if state.guesses is not None and opts.fraction_replaced_guesses > 0:
        g = state.guesses
        pop, loss, cost, cplx, birth = _migrate(
            jax.random.fold_in(k_mig, 1), pop, loss, cost, cplx, birth, state.clock, g.pop, g.loss,
            g.complexity, jnp.isfinite(g.loss), opts.fraction_replaced_guesses, data, opts, ax)

    new_state = SearchState(
        pop=pop, loss=loss, cost=cost, complexity=cplx, birth=birth, freq=freq, hof=hof, key=key,
        clock=state.clock + 1, iteration=state.iteration + 1, guesses=state.guesses,
    )
    return new_state, n_evals


def iteration(
    state: SearchState,
    evaluator: Evaluator,
    data: SearchData,
    opts: SearchOptions,
    curmaxsize: Int[Array, ""],
    ax: IslandAxis = ONE,
) -> tuple[SearchState, Float[Array, ""]]:
    """One PySR iteration on every island (`draw_batch`, `evolve`, `settle` in one
    program). Returns the new state and the evaluations done.

    Under `shard_map` with `ax` naming the island axis, `state` holds this device's
    islands and the result is the one-device result's block (see `_islands.py`)."""
    state, bdata, n_batch = draw_batch(state, evaluator, data, opts, ax)
    state, n_evals = settle(evolve(state, evaluator, bdata, opts, curmaxsize, ax), evaluator, data,
                            opts, ax)
    return state, n_batch + n_evals

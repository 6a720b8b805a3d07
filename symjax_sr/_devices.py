"""Which devices a search runs on: the meshes, the sharded programs, host devices.

`device_list(devices)` checks a request; `island_mesh(devices, populations)` builds the
1-D mesh of one search's islands and `sharded_iteration` is `iteration` under
`shard_map` over it (the state's island axis split, everything else replicated);
`problem_mesh` and `over_problems` do the same for the problem axis of `search_many`.
`use_host_devices(n)` is the opt-in way to give XLA:CPU `n` devices (one per core)
before JAX starts; nothing here changes JAX's configuration unless called.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as Ps

from ._islands import IslandAxis
from ._search import Evolved, SearchState, draw_batch, evolve, iteration, settle

__all__ = [
    "prng_impl", "use_host_devices", "device_list", "island_mesh", "problem_mesh", "state_specs",
    "shard_state", "replicate", "sharded_iteration", "sharded_draw", "sharded_evolve",
    "sharded_settle", "shard_problems", "over_problems",
]

AXIS = "island"
PROBLEM = "problem"


def prng_impl(devices) -> str:
    """The random-number generator of a search: XLA's `rbg` (the fastest on CPU) unless
    `devices` is given; then threefry, whose numbers do not depend on the device they
    are drawn on (`rbg`'s do under `shard_map`), so that 1 and N devices agree."""
    return "rbg" if devices is None else "threefry2x32"


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # an unknown JAX: assume started, the safe answer
        return True


def use_host_devices(n: int) -> None:
    """Give the CPU backend `n` devices (PySR's `procs`), so that a search can split
    its islands over `n` cores. Must run before JAX first touches a device; later it
    raises, unless the CPU backend already has at least `n` devices."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"use_host_devices takes a positive int, got {n!r}.")
    if not _backends_started():
        jax.config.update("jax_num_cpu_devices", n)
        return
    have = len(jax.devices("cpu"))
    if have < n:
        raise RuntimeError(
            f"JAX has already started with {have} CPU device(s), so {n} cannot be made now. "
            f"Call symjax_sr.use_host_devices({n}) before any JAX computation (or start "
            f"Python with JAX_NUM_CPU_DEVICES={n}).")


def device_list(devices) -> list | None:
    """The devices of a request (None / 1: one device, no split; an int `n`: the first
    `n` devices of the default backend, made on CPU if JAX has not started; or a list
    of devices), checked; None when the request is one local device."""
    if devices is None:
        return None
    if isinstance(devices, bool):
        raise TypeError("`devices` takes an int or a list of JAX devices, not a bool.")
    if isinstance(devices, (int, np.integer)):
        devices = int(devices)
        if devices < 1:
            raise ValueError(f"`devices` must be at least 1, got {devices}.")
        if devices == 1:
            return None
        if not _backends_started():
            use_host_devices(devices)
        available = jax.devices()
        if len(available) < devices:
            raise ValueError(
                f"`devices={devices}` but the {available[0].platform} backend has "
                f"{len(available)}. On CPU call symjax_sr.use_host_devices({devices}) before "
                "any JAX computation; elsewhere ask for at most the devices there are.")
        devices = available[:devices]
    elif isinstance(devices, Sequence):
        devices = list(devices)
        if not devices or not all(isinstance(d, jax.Device) for d in devices):
            raise TypeError("`devices` as a list must hold JAX devices (e.g. jax.devices()[:2]).")
        if len(set(devices)) != len(devices):
            raise ValueError("`devices` lists a device twice.")
    else:
        raise TypeError(f"`devices` takes None, an int or a list of JAX devices, got {devices!r}.")
    if len(devices) == 1 and devices[0].process_index == jax.process_index():
        return None
    return devices


def island_mesh(devices, populations: int) -> Mesh | None:
    """The 1-D mesh of the islands for `devices` (see `device_list`; None: one device).
    `populations` must split evenly over them."""
    devices = device_list(devices)
    if devices is None:
        return None
    n = len(devices)
    if populations % n:
        raise ValueError(
            f"populations={populations} islands cannot be split evenly over {n} devices; "
            f"use a multiple of {n} (e.g. {n * max(1, round(populations / n))}).")
    return Mesh(np.array(devices), (AXIS,))


def problem_mesh(devices) -> Mesh | None:
    """The 1-D mesh of the problem axis of `search_many` (None: one device)."""
    devices = device_list(devices)
    return None if devices is None else Mesh(np.array(devices), (PROBLEM,))


def state_specs(state: SearchState) -> SearchState:
    """The partition of a state: the island axis of the populations and their
    statistics split over the mesh, the rest (hall of fame, key, ...) replicated."""
    isl = Ps(AXIS)
    specs = jax.tree.map(lambda _: Ps(), state)
    return SearchState(
        pop=jax.tree.map(lambda _: isl, state.pop), loss=isl, cost=isl, complexity=isl, birth=isl,
        freq=specs.freq, hof=specs.hof, key=specs.key, clock=specs.clock,
        iteration=specs.iteration, guesses=specs.guesses,
    )


def _put(x, sharding: NamedSharding):
    """`x` (the same value in every process) laid out by `sharding`, whose devices may
    belong to other processes too (a multi-host mesh: each process supplies its blocks)."""
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _put(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_state(state: SearchState, mesh: Mesh) -> SearchState:
    """`state` laid out over `mesh` (from one device, another mesh, or the same)."""
    return jax.tree.map(lambda x, s: _put(x, NamedSharding(mesh, s)), state, state_specs(state))


def replicate(tree, mesh: Mesh):
    """`tree` copied to every device of `mesh`."""
    return jax.tree.map(lambda x: _put(x, NamedSharding(mesh, Ps())), tree)


def _sharded(state, data, curmaxsize, *, evaluator, opts, mesh: Mesh):
    specs = state_specs(state)
    body = functools.partial(iteration, evaluator=evaluator, opts=opts,
                             ax=IslandAxis(AXIS, mesh.size))
    return jax.shard_map(
        lambda s, d, c: body(s, data=d, curmaxsize=c), mesh=mesh,
        in_specs=(specs, Ps(), Ps()), out_specs=(specs, Ps()), check_vma=False,
    )(state, data, curmaxsize)


#: `iteration` with the islands split over `mesh` (static, like the options).
sharded_iteration = jax.jit(_sharded, static_argnames=("evaluator", "opts", "mesh"))


def _evolved_specs(state, batching: bool) -> Evolved:
    isl = Ps(AXIS)
    return Evolved(state=state_specs(state), seen=Ps() if batching else None,
                   pop=isl, loss=isl, birth=isl, n_evals=Ps())


def _draw(state, data, *, evaluator, opts, mesh: Mesh):
    specs, ax = state_specs(state), IslandAxis(AXIS, mesh.size)
    return jax.shard_map(
        lambda s, d: draw_batch(s, evaluator, d, opts, ax), mesh=mesh,
        in_specs=(specs, Ps()), out_specs=(specs, Ps(), Ps()), check_vma=False,
    )(state, data)


def _evolve(state, bdata, curmaxsize, *, evaluator, opts, mesh: Mesh):
    ax = IslandAxis(AXIS, mesh.size)
    return jax.shard_map(
        lambda s, b, c: evolve(s, evaluator, b, opts, c, ax), mesh=mesh,
        in_specs=(state_specs(state), Ps(), Ps()), out_specs=_evolved_specs(state, opts.batching),
        check_vma=False,
    )(state, bdata, curmaxsize)


def _settle(evolved, data, *, evaluator, opts, mesh: Mesh):
    ax = IslandAxis(AXIS, mesh.size)
    return jax.shard_map(
        lambda e, d: settle(e, evaluator, d, opts, ax), mesh=mesh,
        in_specs=(_evolved_specs(evolved.state, evolved.seen is not None), Ps()),
        out_specs=(state_specs(evolved.state), Ps()), check_vma=False,
    )(evolved, data)


#: `draw_batch`, `evolve` and `settle` with the islands split over `mesh`: a batched
#: search's iteration as three programs, as on one device (`_run._batched_step`).
sharded_draw = jax.jit(_draw, static_argnames=("evaluator", "opts", "mesh"))
sharded_evolve = jax.jit(_evolve, static_argnames=("evaluator", "opts", "mesh"))
sharded_settle = jax.jit(_settle, static_argnames=("evaluator", "opts", "mesh"))


def shard_problems(tree, mesh: Mesh):
    """`tree` (every leaf led by the problem axis) split over `mesh` along that axis."""
    return jax.tree.map(lambda x: _put(x, NamedSharding(mesh, Ps(PROBLEM))), tree)


def over_problems(fn, mesh: Mesh, replicated: tuple[str, ...] = ()):
    """`fn(**kwargs)` (vmapped over problems) under `shard_map`: each device runs its block
    of problems; keyword arguments in `replicated` are whole on every device, every other
    argument and every output is split along its leading axis."""

    def run(**kwargs):
        names = list(kwargs)
        specs = tuple(Ps() if k in replicated else Ps(PROBLEM) for k in names)
        return jax.shard_map(
            lambda *args: fn(**dict(zip(names, args))), mesh=mesh,
            in_specs=specs, out_specs=Ps(PROBLEM), check_vma=False,
        )(*(kwargs[k] for k in names))

    return run

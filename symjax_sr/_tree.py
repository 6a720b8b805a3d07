"""Fixed-shape expression trees: one host tree, and a population as one pytree.

Encoding (measured best in DESIGN.md §2): postfix order, children before parents,
right-aligned so the root always sits at position L-1 and the real nodes occupy
`L - size .. L - 1`; opcode 0 is padding. A constant leaf points into a small
per-expression constant table, slot `j` holding the `j`-th constant in postfix order
(the canonical order: every function here that builds a population keeps it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._operators import CONST, FIRST_OP, PAD, VAR, OperatorSet

__all__ = ["Tree", "Population", "Complexities", "stack_trees", "structure"]


@dataclasses.dataclass(frozen=True)
class Tree:
    """One expression on the host: postfix node arrays without padding.

    - `op`: opcode per node (`VAR`, `CONST` or `FIRST_OP + i`).
    - `arg`: feature index for a `VAR` node, 0 otherwise.
    - `value`: the constant of a `CONST` node, 0 otherwise.
    """

    op: np.ndarray
    arg: np.ndarray
    value: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "op", np.asarray(self.op, dtype=np.int32).reshape(-1))
        object.__setattr__(self, "arg", np.asarray(self.arg, dtype=np.int32).reshape(-1))
        value = np.asarray(self.value)
        if not np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float64)
        object.__setattr__(self, "value", value.reshape(-1))
        if not (len(self.op) == len(self.arg) == len(self.value)):
            raise ValueError("Tree arrays `op`, `arg` and `value` must have equal length.")

    @property
    def size(self) -> int:
        return len(self.op)

    @property
    def constants(self) -> np.ndarray:
        """The constants in postfix order (the canonical slot order)."""
        return self.value[self.op == CONST]

    def with_constants(self, constants) -> Tree:
        """A copy with the constants replaced, in postfix order."""
        constants = np.asarray(constants).reshape(-1)
        mask = self.op == CONST
        if constants.shape[0] != int(mask.sum()):
            raise ValueError(
                f"Tree has {int(mask.sum())} constants, got {constants.shape[0]} values."
            )
        value = self.value.copy()
        value[mask] = constants
        return Tree(self.op, self.arg, value)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Tree)
            and np.array_equal(self.op, other.op)
            and np.array_equal(self.arg, other.arg)
            and np.array_equal(self.value, other.value, equal_nan=True)
        )

    def __hash__(self):
        return hash((self.op.tobytes(), self.arg.tobytes(), self.value.tobytes()))

    def depth(self, operators: OperatorSet) -> int:
        arity = operators.arity_table[self.op]
        stack: list[int] = []
        for a in arity:
            if a == 0:
                stack.append(1)
            else:
                children = [stack.pop() for _ in range(a)]
                stack.append(1 + max(children))
        return stack[-1] if stack else 0

    def validate(self, operators: OperatorSet, n_features: int | None = None) -> None:
        """Raise `ValueError` saying what is wrong if this is not a well-formed tree."""
        if self.size == 0:
            raise ValueError("Empty tree: an expression needs at least one node.")
        if np.any(self.op < VAR) or np.any(self.op >= operators.num_opcodes):
            bad = self.op[(self.op < VAR) | (self.op >= operators.num_opcodes)]
            raise ValueError(
                f"Tree has opcode(s) {sorted(set(bad.tolist()))} outside 1..{operators.num_opcodes - 1}."
            )
        arity = operators.arity_table[self.op]
        depth = np.cumsum(1 - arity)
        if np.any(depth[:-1] < 1) or depth[-1] != 1 or np.any(depth < 1):
            raise ValueError(
                "Tree is not a valid postfix expression: operators do not have enough "
                "operands, or leaves are left over."
            )
        var = self.op == VAR
        if np.any(self.arg[var] < 0) or (
            n_features is not None and np.any(self.arg[var] >= n_features)
        ):
            raise ValueError(
                f"Tree refers to feature(s) {sorted(set(self.arg[var].tolist()))} but the "
                f"data has {n_features} feature(s)."
            )


class Population(eqx.Module):
    """A population of `P` expressions of at most `L` nodes, as one pytree.

    - `op`: int32 `[P, L]`, right-aligned postfix opcodes (0 = padding).
    - `arg`: int32 `[P, L]`, feature index of a `VAR` node, constant slot of a `CONST`.
    - `const`: float `[P, K]`, the constant table; slot `j` is the `j`-th constant.
    """

    op: Int[Array, "pop length"]
    arg: Int[Array, "pop length"]
    const: Float[Array, "pop nconst"]

    @property
    def size(self) -> Int[Array, " pop"]:
        """Real node count of each expression."""
        return (self.op != PAD).sum(axis=-1)

    @property
    def length(self) -> int:
        return self.op.shape[-1]

    @property
    def nconst(self) -> int:
        return self.const.shape[-1]

    def __len__(self) -> int:
        return self.op.shape[0]

    def tree(self, i: int) -> Tree:
        """Expression `i` as a host `Tree`."""
        op = np.asarray(self.op[i])
        arg = np.asarray(self.arg[i])
        const = np.asarray(self.const[i])
        real = op != PAD
        op, arg = op[real], arg[real]
        is_const = op == CONST
        value = np.zeros(op.shape, dtype=const.dtype)
        value[is_const] = const[arg[is_const]]
        return Tree(op, np.where(op == VAR, arg, 0), value)

    def trees(self) -> list[Tree]:
        return [self.tree(i) for i in range(len(self))]


def stack_trees(
    trees: Sequence[Tree], length: int, nconst: int, dtype=np.float32
) -> Population:
    """Pad host trees into a `Population` of shape `[len(trees), length]`.

    Raises `ValueError` if a tree has more than `length` nodes or `nconst` constants.
    """
    P = len(trees)
    op = np.zeros((P, length), np.int32)
    arg = np.zeros((P, length), np.int32)
    const = np.zeros((P, nconst), dtype)
    for i, t in enumerate(trees):
        if t.size > length:
            raise ValueError(
                f"Expression {i} has {t.size} nodes but the population holds at most "
                f"{length}; raise `maxsize`."
            )
        c = t.constants
        if len(c) > nconst:
            raise ValueError(
                f"Expression {i} has {len(c)} constants but the population holds at most "
                f"{nconst}; raise the constant table size."
            )
        start = length - t.size
        is_const = t.op == CONST
        slots = np.cumsum(is_const) - 1
        op[i, start:] = t.op
        arg[i, start:] = np.where(is_const, slots, np.where(t.op == VAR, t.arg, 0))
        const[i, : len(c)] = c
    return Population(op=jnp.asarray(op), arg=jnp.asarray(arg), const=jnp.asarray(const))


def structure(
    op: Int[Array, " length"], arity_table: np.ndarray
) -> tuple[Int[Array, " length"], Int[Array, " length"], Int[Array, " length"]]:
    """Derived structure of one right-aligned postfix expression, vectorised (jit/vmap-safe).

    Returns `(level, start, node_depth)` per position:

    - `level`: stack height after the node; the node's value sits in register
      `level - 1`, a binary node's right operand in register `level`.
    - `start`: first position of the node's subtree (so its size is `i - start + 1`).
    - `node_depth`: 1 for the root, 1 + parent's otherwise; 0 for padding.
    """
    L = op.shape[-1]
    arity = jnp.asarray(arity_table)[op]
    real = op != PAD
    level = jnp.cumsum(jnp.where(real, 1 - arity, 0))
    pos = jnp.arange(L)
    # start_i = 1 + last j < i whose level is level_i - 1 (position -1 has level 0).
    earlier = pos[None, :] < pos[:, None]
    match = earlier & (level[None, :] == (level[:, None] - 1))
    last = jnp.max(jnp.where(match, pos[None, :], -1), axis=1)
    start = jnp.where(real, last + 1, pos)
    # node j is inside the subtree of node i when start_i <= j <= i.
    inside = (start[:, None] <= pos[None, :]) & (pos[None, :] <= pos[:, None]) & real[:, None]
    node_depth = jnp.where(real, inside.sum(axis=0), 0)
    return level, start, node_depth


@dataclasses.dataclass(frozen=True)
class Complexities:
    """Complexity of each node kind, as PySR's `complexity_of_*` options set them.

    - `operators`: complexity per opcode (`PAD`, `VAR`, `CONST` entries ignored).
    - `variables`: complexity per feature.
    - `constant`: complexity of a constant leaf.
    """

    operators: tuple[float, ...]
    variables: tuple[float, ...]
    constant: float = 1.0

    @classmethod
    def make(
        cls,
        operators: OperatorSet,
        n_features: int,
        complexity_of_operators: dict[str, float] | None = None,
        complexity_of_constants: float = 1.0,
        complexity_of_variables: float | Sequence[float] = 1.0,
    ) -> Complexities:
        per_op = [0.0, 0.0, 0.0] + [op.complexity for op in operators.operators]
        for name, c in (complexity_of_operators or {}).items():
            per_op[operators.opcode(name)] = float(c)
        if np.ndim(complexity_of_variables) == 0:
            per_var = (float(complexity_of_variables),) * n_features
        else:
            per_var = tuple(float(c) for c in complexity_of_variables)
            if len(per_var) != n_features:
                raise ValueError(
                    f"`complexity_of_variables` has {len(per_var)} entries but the data "
                    f"has {n_features} features; give one per feature or a single number."
                )
        return cls(tuple(per_op), per_var, float(complexity_of_constants))

    @property
    def is_unit(self) -> bool:
        """True when every node costs 1, so complexity equals size."""
        return all(c == 1 for c in self.operators[FIRST_OP:]) and all(
            c == 1 for c in self.variables
        ) and self.constant == 1

    def of_population(self, pop: Population, xp=jnp) -> Float[Array, " pop"]:
        """Complexity of every expression (`xp` is `jnp` inside jit or `np` on the host)."""
        table = xp.asarray(self.operators, dtype=xp.float32)
        table = table.at[CONST].set(self.constant) if xp is jnp else _np_set(table, CONST, self.constant)
        per_var = xp.asarray(self.variables, dtype=xp.float32)
        op = xp.asarray(pop.op)
        arg = xp.asarray(pop.arg)
        node = xp.where(op == VAR, per_var[xp.clip(arg, 0, len(self.variables) - 1)], table[op])
        return xp.where(op == PAD, 0.0, node).sum(axis=-1)

    def of_tree(self, tree: Tree) -> float:
        total = 0.0
        for o, a in zip(tree.op, tree.arg):
            if o == VAR:
                total += self.variables[a]
            elif o == CONST:
                total += self.constant
            else:
                total += self.operators[o]
        return total


def _np_set(table: np.ndarray, i: int, v: float) -> np.ndarray:
    table = table.copy()
    table[i] = v
    return table

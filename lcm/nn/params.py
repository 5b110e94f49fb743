"""Parameter helpers: every parameter carries logical axis names for the sharding rules.

The names are "embed" (d_model), "mlp" (feed-forward hidden), "heads" (flattened
heads * head_dim), "vocab", "concept" (the sentence-vector size D) or None; the trainer's rules
table maps them onto the mesh. Sharding is applied by the trainer (``eager_sharding=False``),
so modules can be built with no mesh in scope.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

Names = Sequence[str | None]


def partitioned(initializer: nnx.Initializer, names: Names) -> nnx.Initializer:
    """Wrap ``initializer`` so the parameter it creates carries logical axis ``names``."""
    return nnx.with_partitioning(initializer, tuple(names), eager_sharding=False)


def param(value: jax.Array, names: Names) -> nnx.Param:
    """A parameter holding ``value`` with logical axis ``names`` (one per dimension)."""
    if len(names) != value.ndim:
        raise ValueError(f"{len(names)} axis names {tuple(names)} for a {value.ndim}-d parameter")
    return nnx.Param(value, out_sharding=tuple(names), eager_sharding=False)


def kernel_init(batch_axis: tuple[int, ...] = (), scale: float = 1.0) -> nnx.Initializer:
    """Truncated-normal fan-in initializer for a kernel ``[in, ..., out]``.

    Args:
        batch_axis: Axes between input and output that index independent fused kernels
            (the 3 of a fused ``[embed, 3, heads]`` QKV kernel), excluded from the fan-in.
        scale: Variance scale (smaller for residual output projections).
    """
    return nnx.initializers.variance_scaling(
        scale, "fan_in", "truncated_normal", in_axis=0, out_axis=-1, batch_axis=batch_axis
    )

"""The device mesh ``('data', 'fsdp', 'model')`` and the logical-axis rules table.

Parameters are created with logical axis names (``nnx.with_partitioning(init, ("embed",
"mlp"), eager_sharding=False)``); :data:`LOGICAL_RULES` maps each name to mesh axes. This
table is the one place where the parallelism strategy is decided.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from trainers.config import MeshConfig

MESH_AXES = ("data", "fsdp", "model")

# logical axis -> mesh axis (or axes, or None = replicated).
LOGICAL_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "embed": "fsdp",
    "mlp": "model",
    "heads": "model",
    "vocab": "model",
    "concept": None,
}


def mesh_shape(cfg: MeshConfig, n_devices: int) -> tuple[int, int, int]:
    """Resolve a -1 axis and check the shape uses exactly ``n_devices`` devices."""
    dims = [cfg.data, cfg.fsdp, cfg.model]
    if dims.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {dims}")
    if any(d == 0 or d < -1 for d in dims):
        raise ValueError(f"mesh axes must be positive or -1, got {dims}")
    known = math.prod(d for d in dims if d != -1)
    if -1 in dims:
        if n_devices % known:
            raise ValueError(f"mesh {dims} does not divide the {n_devices} devices")
        dims[dims.index(-1)] = n_devices // known
    if math.prod(dims) != n_devices:
        raise ValueError(f"mesh {dims} needs {math.prod(dims)} devices, have {n_devices}")
    return tuple(dims)  # type: ignore[return-value]


def make_mesh(cfg: MeshConfig, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Build the mesh with Auto axes (so sharding propagates without explicit annotations)."""
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(cfg, len(devices))
    return jax.make_mesh(
        shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices
    )


def logical_to_mesh_spec(logical: PartitionSpec, shape: Sequence[int], mesh: Mesh) -> PartitionSpec:
    """Map a spec of logical names to mesh axes.

    A dimension stays replicated when its rule is None, when its mesh axes are already used
    by an earlier dimension, or when its size is not divisible by the mesh axes' size (so
    odd shapes, e.g. a vocabulary of 8003, never fail to shard).
    """
    used: set[str] = set()
    out: list[Any] = []
    for dim, name in zip(shape, tuple(logical) + (None,) * (len(shape) - len(logical))):
        axes = LOGICAL_RULES.get(name) if isinstance(name, str) else None
        if isinstance(name, str) and name not in LOGICAL_RULES:
            raise KeyError(f"logical axis {name!r} has no rule in trainers.mesh.LOGICAL_RULES")
        axes_t = (axes,) if isinstance(axes, str) else tuple(axes or ())
        axes_t = tuple(a for a in axes_t if a not in used and mesh.shape[a] > 1)
        size = math.prod(mesh.shape[a] for a in axes_t)
        if not axes_t or dim % size:
            out.append(None)
            continue
        used.update(axes_t)
        out.append(axes_t[0] if len(axes_t) == 1 else axes_t)
    return PartitionSpec(*out)


def state_shardings(logical_specs: Any, abstract: Any, mesh: Mesh) -> Any:
    """NamedShardings for a tree of arrays/ShapeDtypeStructs given its tree of logical specs."""

    def one(spec: Any, x: Any) -> NamedSharding:
        spec = spec if isinstance(spec, PartitionSpec) else PartitionSpec()
        return NamedSharding(mesh, logical_to_mesh_spec(spec, np.shape(x), mesh))

    return jax.tree.map(
        one, logical_specs, abstract, is_leaf=lambda s: isinstance(s, PartitionSpec) or s is None
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The batch dimension is split over data x fsdp; the rest is replicated."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


def replicated(mesh: Mesh) -> NamedSharding:
    """Fully replicated sharding (scalars, step counters)."""
    return NamedSharding(mesh, PartitionSpec())


@dataclasses.dataclass(frozen=True)
class ShardingStats:
    """How a tree of arrays is laid out over its mesh.

    Attributes:
        arrays: Number of arrays.
        sharded: Arrays split over at least one mesh axis (the rest are replicated).
        total_bytes: Bytes of all arrays, counted once.
        bytes_per_device: Bytes held by one device (the largest share, if uneven).
    """

    arrays: int
    sharded: int
    total_bytes: int
    bytes_per_device: int


def sharding_stats(tree: Any) -> ShardingStats:
    """Layout of ``tree``'s leaves: ``jax.Array`` or ``jax.ShapeDtypeStruct`` with shardings.

    Read from the shardings alone (``shard_shape``), so it works on an abstract state before
    anything is allocated.
    """
    leaves = jax.tree.leaves(tree)
    per_device: dict[Any, int] = {}
    total = sharded = 0
    for x in leaves:
        itemsize = np.dtype(x.dtype).itemsize
        total += math.prod(x.shape) * itemsize
        sharded += not x.sharding.is_fully_replicated
        shard = math.prod(x.sharding.shard_shape(x.shape)) * itemsize
        for device in x.sharding.device_set:
            per_device[device] = per_device.get(device, 0) + shard
    return ShardingStats(
        arrays=len(leaves),
        sharded=sharded,
        total_bytes=total,
        bytes_per_device=max(per_device.values(), default=0),
    )

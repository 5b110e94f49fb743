"""The train state: its sharded layout, its initialization, and loading a trained model.

The state is a plain dict ``{"step", "params", "buffers", "opt_state"}`` of arrays. Its layout
(shapes, dtypes, shardings) is derived without allocating anything: the model is built
abstractly to read parameter shapes and logical axis names, and the optimizer's per-parameter
state is sharded like its parameter. Initialization then runs as one ``jit`` with
``out_shardings``, so no process ever materializes an unsharded model, and a restore targets
the same abstract layout, so each process reads only its own shards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lcm.nn.frozen import Frozen
from lcm.nn.weights import build_with_weights, flat_weights, load_weights, variable_name
from trainers.checkpoint import Checkpointer, CheckpointError
from trainers.config import MeshConfig, TrainConfig, load_train_config
from trainers.mesh import make_mesh, replicated, state_shardings
from trainers.optim import make_optimizer
from trainers.task import Task
from trainers.tasks import get_task


@dataclasses.dataclass(frozen=True)
class StateLayout:
    """Everything known about the train state before it exists.

    Attributes:
        graphdef: Static structure of the model (split once, merged inside the step).
        abstract: The state as ``jax.ShapeDtypeStruct`` leaves carrying their shardings.
        shardings: ``NamedSharding`` tree of the state.
        init: Jitted ``() -> state`` creating every shard on its own device.
        build: Builds the model (freshly initialized; trace it with ``nnx.eval_shape``).
    """

    graphdef: Any
    abstract: Any
    shardings: Any
    init: Callable[[], dict[str, Any]]
    build: Callable[[], nnx.Module]


def plan_train_state(
    task: Task, cfg: TrainConfig, mesh: jax.sharding.Mesh, tx: optax.GradientTransformation
) -> StateLayout:
    """Derive the sharded layout of the train state of ``cfg`` on ``mesh``."""
    init_key = jax.random.fold_in(jax.random.key(cfg.seed), 0)

    def build() -> nnx.Module:
        return task.build_model(cfg.model, cfg.data, nnx.Rngs(init_key))

    abstract_model = nnx.eval_shape(build)
    if jax.tree.leaves(nnx.split(abstract_model, nnx.RngState, ...)[1]):
        raise TypeError(
            f"task {task.name!r}: the model holds RNG state; take randomness from the `rng` "
            "argument of loss() instead, so the train step stays a pure function"
        )
    graphdef, abstract_params, abstract_buffers = nnx.split(abstract_model, nnx.Param, ...)
    param_specs = nnx.to_pure_dict(nnx.get_partition_spec(abstract_params))
    abstract_params = nnx.to_pure_dict(abstract_params)
    param_shardings = state_shardings(param_specs, abstract_params, mesh)
    # Each optimizer-state copy of a parameter (Adam's moments) is sharded like it; counters
    # are replicated. (Left to XLA, the moments come out replicated: they are zeros that
    # depend on no sharded input, so FSDP would not split the largest part of the state.)
    opt_shardings = optax.tree_map_params(
        tx,
        lambda leaf, sharding, param: sharding if leaf.shape == param.shape else replicated(mesh),
        jax.eval_shape(tx.init, abstract_params),
        param_shardings,
        abstract_params,
        transform_non_params=lambda _: replicated(mesh),
    )
    shardings = {
        "step": replicated(mesh),
        "params": param_shardings,
        "buffers": jax.tree.map(lambda _: replicated(mesh), nnx.to_pure_dict(abstract_buffers)),
        "opt_state": opt_shardings,
    }

    def init() -> dict[str, Any]:
        _, params, buffers = nnx.split(build(), nnx.Param, ...)
        params = nnx.to_pure_dict(params)
        return {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "buffers": nnx.to_pure_dict(buffers),
            "opt_state": tx.init(params),
        }

    shapes = jax.eval_shape(init)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings
    )
    return StateLayout(
        graphdef=graphdef,
        abstract=abstract,
        shardings=shardings,
        init=jax.jit(init, out_shardings=shardings),
        build=build,
    )


def with_initial_weights(layout: StateLayout, state: dict[str, Any], source: str) -> dict[str, Any]:
    """``state`` with its parameters and buffers taken from trained weights.

    Args:
        layout: The layout ``state`` follows.
        state: A freshly initialized train state (its optimizer state is kept).
        source: A model directory, a weights ``.npz``, or a run directory (newest checkpoint).

    Raises:
        FileNotFoundError: ``source`` does not exist or holds no weights.
        ValueError: A variable is missing, unexpected, wrongly shaped or not finite for this
            config (the message names it).
    """
    path = Path(source).expanduser()
    if (path / "checkpoints").is_dir():
        _, trained, _ = load_trained_model(path)
        weights = flat_weights(trained)
    elif path.is_dir():
        weights = load_weights(path / "weights.npz")
    else:
        weights = load_weights(path)
    # Frozen variables (a scorer's decoder) are part of the model, not of what it learned:
    # a source without them (a model directory of the same network) keeps the built ones.
    # Their built values are already in ``state``'s buffers: no second model is built.
    frozen = nnx.to_flat_state(nnx.state(nnx.eval_shape(layout.build), Frozen))
    names = {variable_name(p) for p, _ in frozen}
    if names and not names & set(weights):
        built = {
            variable_name(p): np.asarray(v)
            for p, v in jax.tree_util.tree_leaves_with_path(state["buffers"])
        }
        weights = {**weights, **{name: built[name] for name in names}}
    model = build_with_weights(layout.build, weights, source=f"init_from {path}")
    _, params, buffers = nnx.split(model, nnx.Param, ...)
    loaded = {"params": nnx.to_pure_dict(params), "buffers": nnx.to_pure_dict(buffers)}
    placed = jax.tree.map(_place, loaded, {k: layout.shardings[k] for k in loaded})
    return {**state, **placed}


def _place(value: jax.Array, sharding: jax.sharding.Sharding) -> jax.Array:
    """A global array from a value every process holds in full (each takes its shards)."""
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def load_trained_model(
    run_dir: str | Path, mesh_cfg: MeshConfig | None = None
) -> tuple[TrainConfig, nnx.Module, int]:
    """Rebuild the model of a training run from its newest readable checkpoint.

    Args:
        run_dir: A run directory written by :func:`trainers.loop.train`.
        mesh_cfg: Mesh to restore onto (default: all local devices on the data axis); it
            need not match the mesh the run was trained on.

    Returns:
        ``(config, model, step)``.

    Raises:
        CheckpointError: The run has no readable checkpoint.
    """
    run_dir = Path(run_dir)
    cfg = load_train_config(run_dir / "config.yaml")
    mesh = make_mesh(mesh_cfg or MeshConfig())
    layout = plan_train_state(get_task(cfg.family), cfg, mesh, make_optimizer(cfg.optim, cfg.steps))
    checkpointer = Checkpointer(run_dir / "checkpoints", every=0, keep=1_000_000)
    try:
        restored = checkpointer.restore_latest(layout.abstract)
    finally:
        checkpointer.close()
    if restored is None:
        raise CheckpointError(f"no checkpoint in {run_dir / 'checkpoints'}")
    step, state, _ = restored
    model = nnx.merge(layout.graphdef, state["params"], state["buffers"])
    return cfg, model, step

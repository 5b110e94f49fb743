"""What a trainable model plugs into the trainer: a :class:`Task`.

A task names the config dataclasses of its ``model:`` and ``data:`` YAML sections, builds the
model (an ``nnx.Module`` with ``loss(batch, rng) -> (loss, metrics)``) and builds a
:class:`BatchSource`. The trainer knows nothing else about the model, so a new variant is one
model file, one task and one config, never a new loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np
from flax import nnx


@dataclasses.dataclass(frozen=True)
class DataContext:
    """Where this process sits in the global batch.

    Attributes:
        batch_size: Global batch size (all processes together).
        seed: Data seed; the data order is a pure function of (seed, step, process_index).
        process_index: Index of this process (``jax.process_index()``).
        process_count: Number of processes (``jax.process_count()``).
    """

    batch_size: int
    seed: int
    process_index: int = 0
    process_count: int = 1

    def __post_init__(self) -> None:
        if self.batch_size % self.process_count:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by the "
                f"{self.process_count} processes"
            )

    @property
    def local_batch_size(self) -> int:
        """Rows of the global batch this process provides."""
        return self.batch_size // self.process_count


class BatchSource(Protocol):
    """A deterministic stream of batches."""

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of the global batch at ``step``.

        Must be a pure function of (seed, step, process_index), so a resumed run sees exactly
        the data it would have seen, with nothing replayed. Every array has a leading
        ``[local_batch]`` dimension.
        """
        ...


class TrainableModel(Protocol):
    """The one method the trainer calls on a model."""

    def loss(
        self, batch: dict[str, jax.Array], rng: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Scalar loss and scalar metrics (a ``"tokens"`` count feeds the throughput figure)."""
        ...


@dataclasses.dataclass(frozen=True)
class Task:
    """A trainable model family as the trainer sees it.

    Attributes:
        name: Registry name, the ``task:`` key of a training config.
        model_config: Frozen dataclass type of the ``model:`` section.
        data_config: Frozen dataclass type of the ``data:`` section.
        build_model: ``(model_cfg, data_cfg, rngs) -> module`` with a ``loss`` method. The
            module must hold no RNG state: randomness comes from the ``rng`` argument of
            ``loss`` (derived by the trainer from ``fold_in(key, step)``).
        build_data: ``(data_cfg, model_cfg, ctx) -> BatchSource``.
        export: Optional ``(model, model_cfg, data_cfg, out_dir)`` writing a model directory.
        build_network: Optional ``(model_cfg, dim, rngs) -> module``: the network alone, for
            a data dimension ``dim``, whose variables a model directory's stored weights
            replace (``lcm.models.directory.load_lcm``). None: the task has no such directory.
    """

    name: str
    model_config: type
    data_config: type
    build_model: Callable[[Any, Any, nnx.Rngs], nnx.Module]
    build_data: Callable[[Any, Any, DataContext], BatchSource]
    export: Callable[[nnx.Module, Any, Any, str], None] | None = None
    build_network: Callable[[Any, int, nnx.Rngs], nnx.Module] | None = None

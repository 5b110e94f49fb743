"""A small real task for the trainer: an MLP regressing a fixed random nonlinear function.

It exercises every part of the loop (sharded init, data order as a function of the step,
checkpoints, resume, metrics) in seconds on a CPU, and is what the trainer tests run.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from trainers.task import DataContext, Task


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """Model section of the ``mlp_regression`` task."""

    hidden: int = 64
    depth: int = 2


@dataclasses.dataclass(frozen=True)
class RegressionDataConfig:
    """Data section: targets are ``sin(x @ W) @ v`` for a fixed random ``W, v``."""

    in_features: int = 8
    out_features: int = 1
    function_seed: int = 1234
    noise: float = 0.0


class MLP(nnx.Module):
    """``depth`` GELU layers and a linear head, trained with mean squared error."""

    def __init__(self, cfg: MLPConfig, data: RegressionDataConfig, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        sizes = [data.in_features] + [cfg.hidden] * cfg.depth
        self.layers = nnx.List(
            [
                nnx.Linear(
                    a,
                    b,
                    kernel_init=nnx.with_partitioning(init, ("embed", "mlp"), eager_sharding=False),
                    rngs=rngs,
                )
                for a, b in zip(sizes[:-1], sizes[1:])
            ]
        )
        self.head = nnx.Linear(
            cfg.hidden,
            data.out_features,
            kernel_init=nnx.with_partitioning(init, ("mlp", None), eager_sharding=False),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[batch, in_features] -> [batch, out_features]``."""
        for layer in self.layers:
            x = jax.nn.gelu(layer(x))
        return self.head(x)

    def loss(
        self, batch: dict[str, jax.Array], rng: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean squared error on ``batch = {"x": [B, in], "y": [B, out]}``."""
        del rng  # deterministic model
        err = self(batch["x"]) - batch["y"]
        mse = jnp.mean(err**2)
        return mse, {"mse": mse}


class RegressionSource:
    """Synthetic batches whose content is a pure function of (seed, step).

    The global batch of a step is drawn from one generator seeded by (seed, step) and each
    process keeps its own rows, so the global batch is the same for any number of processes
    (generating all rows is cheap at this size; real sources index rows instead).
    """

    def __init__(self, cfg: RegressionDataConfig, ctx: DataContext):
        self.cfg = cfg
        self.ctx = ctx
        rng = np.random.default_rng(cfg.function_seed)
        self.w = rng.normal(size=(cfg.in_features, 16)) / np.sqrt(cfg.in_features)
        self.v = rng.normal(size=(16, cfg.out_features)) / 4.0

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of the global batch at ``step``."""
        rng = np.random.default_rng([self.ctx.seed, step])
        x = rng.normal(size=(self.ctx.batch_size, self.cfg.in_features))
        noise = rng.normal(size=(self.ctx.batch_size, self.cfg.out_features))
        y = np.sin(x @ self.w) @ self.v + self.cfg.noise * noise
        rows = slice(
            self.ctx.process_index * self.ctx.local_batch_size,
            (self.ctx.process_index + 1) * self.ctx.local_batch_size,
        )
        return {"x": x[rows].astype(np.float32), "y": y[rows].astype(np.float32)}


MLP_REGRESSION = Task(
    name="mlp_regression",
    model_config=MLPConfig,
    data_config=RegressionDataConfig,
    build_model=lambda model_cfg, data_cfg, rngs: MLP(model_cfg, data_cfg, rngs),
    build_data=lambda data_cfg, model_cfg, ctx: RegressionSource(data_cfg, ctx),
)

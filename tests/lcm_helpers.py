"""Test helpers for the concept models."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def random_model(make: Callable[[], nnx.Module], buffers: np.ndarray | None = None) -> nnx.Module:
    """``make()`` with random (not initial) parameters drawn by numpy.

    The model is built abstractly and filled on the host, so no initializer is compiled
    (eager initialization compiles every op once and dominates small tests). Random weights
    also matter: zero-initialized AdaLN gates would hide the denoiser from the tests.

    Args:
        make: Builds the model.
        buffers: Value of the model's one non-parameter variable (the Quant-LCM codebooks).
    """
    graphdef, params, rest = nnx.split(nnx.eval_shape(make), nnx.Param, ...)
    rng = np.random.default_rng(0)

    def fill(x: jax.ShapeDtypeStruct) -> jax.Array:
        if len(x.shape) == 1:
            return jnp.asarray(1.0 + 0.2 * rng.normal(size=x.shape), x.dtype)
        return jnp.asarray(rng.normal(size=x.shape) / np.sqrt(x.shape[0]), x.dtype)

    params = jax.tree.map(fill, params)
    rest = jax.tree.map(lambda _: jnp.asarray(buffers), rest)
    return nnx.merge(graphdef, params, rest)

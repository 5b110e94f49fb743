"""Diffusion timestep embedding: sinusoidal features of the step index, then a small MLP (DiT)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lcm.nn import matmul
from lcm.nn.embeddings import sinusoidal_positions


class TimestepEmbedding(nnx.Module):
    """``t -> Linear(SiLU(Linear(sinusoidal(t))))``.

    Args:
        dim: Output width (the model width).
        frequency_dim: Width of the sinusoidal features.
        dtype: Compute dtype.
        param_dtype: Parameter dtype.
        rngs: Initialization RNGs.
    """

    def __init__(
        self,
        dim: int,
        *,
        frequency_dim: int = 256,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.frequency_dim = frequency_dim
        kw = {"dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
        self.hidden = matmul.dense(frequency_dim, dim, (None, "embed"), **kw)
        self.out = matmul.dense(dim, dim, ("embed", None), **kw)

    def __call__(self, t: jax.Array) -> jax.Array:
        """Integer (or real) timesteps ``[...]`` -> embeddings ``[..., dim]``."""
        features = sinusoidal_positions(t, self.frequency_dim)
        return self.out(jax.nn.silu(self.hidden(features)))

"""Token embeddings (with a tied output projection) and position encodings."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcm.nn import matmul
from lcm.nn.params import param


class TokenEmbedding(nnx.Module):
    """A ``[vocab, dim]`` table used for input lookup and, tied, as the output projection.

    The table is initialized with standard deviation ``dim**-0.5`` and looked up scaled by
    ``sqrt(dim)``, so inputs have unit variance and tied logits start at unit scale.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.dim = dim
        self.dtype = dtype
        init = nnx.initializers.normal(stddev=dim**-0.5)
        table = init(rngs.params(), (vocab_size, dim), param_dtype)
        self.embedding = param(table, ("vocab", "embed"))

    def __call__(self, ids: jax.Array) -> jax.Array:
        """Look up ``ids`` [...] -> [..., dim] in the compute dtype."""
        table = self.embedding[...]
        return (jnp.take(table, ids, axis=0) * math.sqrt(self.dim)).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        """Tied output logits: ``x`` [..., dim] -> [..., vocab] in float32."""
        table = self.embedding[...].astype(self.dtype)
        return matmul.einsum("...d,vd->...v", x.astype(self.dtype), table).astype(jnp.float32)


class LearnedPositions(nnx.Module):
    """A learned ``[max_len, dim]`` table of absolute position embeddings."""

    def __init__(
        self,
        max_len: int,
        dim: int,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.dtype = dtype
        init = nnx.initializers.normal(stddev=0.02)
        self.embedding = param(init(rngs.params(), (max_len, dim), param_dtype), (None, "embed"))

    def __call__(self, positions: jax.Array) -> jax.Array:
        """``positions`` [...] (int) -> [..., dim]."""
        return jnp.take(self.embedding[...], positions, axis=0).astype(self.dtype)


def sinusoidal_positions(positions: jax.Array, dim: int, base: float = 10000.0) -> jax.Array:
    """Fixed sine/cosine position encodings (Vaswani et al.), [...] -> [..., dim] float32."""
    half = dim // 2
    inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions[..., None].astype(jnp.float32) * inv_freq
    enc = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    return jnp.pad(enc, [(0, 0)] * (enc.ndim - 1) + [(0, dim - 2 * half)])


def apply_rope(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotary position embedding (rotate-half form) on the last axis.

    Args:
        x: Queries or keys, [batch, seq, heads, head_dim] (head_dim even).
        positions: Integer positions, [batch, seq] or [seq]. A NumPy array (positions known
            when tracing, e.g. ``np.arange(seq)``) turns the sine and cosine tables into
            constants: traced tables are fused into the rotation by XLA, which then recomputes
            every sine and cosine for each head and batch row (a tenth of the codec's encoding
            time on CPU).
        base: Wavelength base.

    Returns:
        ``x`` rotated by its positions, same shape and dtype.
    """
    half = x.shape[-1] // 2
    xp = np if isinstance(positions, np.ndarray) else jnp  # NumPy: computed when tracing
    inv_freq = base ** (-xp.arange(half, dtype=xp.float32) / half)
    angles = positions[..., None].astype(xp.float32) * inv_freq  # [(batch,) seq, half]
    cos = xp.cos(angles)[..., None, :]  # broadcast over heads
    sin = xp.sin(angles)[..., None, :]
    x1 = x[..., :half].astype(jnp.float32)
    x2 = x[..., half:].astype(jnp.float32)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)

"""Normalization layers (statistics in float32, output in the compute dtype)."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from lcm.nn.params import param

NormKind = Literal["layernorm", "rmsnorm"]


class LayerNorm(nnx.Module):
    """Layer normalization over the last axis with a learned scale and bias."""

    def __init__(
        self,
        dim: int,
        *,
        eps: float = 1e-5,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
    ):
        self.eps = eps
        self.dtype = dtype
        self.scale = param(jnp.ones((dim,), param_dtype), ("embed",))
        self.bias = param(jnp.zeros((dim,), param_dtype), ("embed",))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalize ``x`` [..., dim]."""
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]
        return y.astype(self.dtype)


class RMSNorm(nnx.Module):
    """Root-mean-square normalization over the last axis with a learned scale."""

    def __init__(
        self,
        dim: int,
        *,
        eps: float = 1e-6,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
    ):
        self.eps = eps
        self.dtype = dtype
        self.scale = param(jnp.ones((dim,), param_dtype), ("embed",))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalize ``x`` [..., dim]."""
        x32 = x.astype(jnp.float32)
        ms = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        return (x32 * jax.lax.rsqrt(ms + self.eps) * self.scale[...]).astype(self.dtype)


def make_norm(
    kind: NormKind,
    dim: int,
    *,
    dtype: jnp.dtype = jnp.float32,
    param_dtype: jnp.dtype = jnp.float32,
) -> LayerNorm | RMSNorm:
    """Build the normalization layer named by ``kind``."""
    if kind == "layernorm":
        return LayerNorm(dim, dtype=dtype, param_dtype=param_dtype)
    if kind == "rmsnorm":
        return RMSNorm(dim, dtype=dtype, param_dtype=param_dtype)
    raise ValueError(f"unknown norm kind {kind!r}; expected 'layernorm' or 'rmsnorm'")

"""Adaptive layer-norm modulation (DiT "adaLN-Zero") from a conditioning vector.

A block with ``n`` residual sublayers gets, per sublayer, a shift, a scale and a gate computed
from the conditioning (e.g. a diffusion timestep embedding)::

    x = x + gate * sublayer(norm(x) * (1 + scale) + shift)

The projection is zero-initialized, so at initialization every gate is 0 and each block is
the identity: conditioning is learned from a stable starting point.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from lcm.nn import matmul
from lcm.nn.params import partitioned


class Modulation(NamedTuple):
    """Shift, scale and gate of one sublayer, each ``[..., dim]``."""

    shift: jax.Array
    scale: jax.Array
    gate: jax.Array


def modulate(x: jax.Array, mod: Modulation) -> jax.Array:
    """``x * (1 + scale) + shift`` on a normalized input ``[..., dim]``."""
    return x * (1 + mod.scale) + mod.shift


class AdaLNModulator(nnx.Module):
    """``Linear(SiLU(cond))`` split into (shift, scale, gate) for each of ``num_sublayers``.

    Args:
        cond_dim: Width of the conditioning vector.
        dim: Width of the modulated stream.
        num_sublayers: Residual sublayers of the block (3: self-attn, cross-attn, FFN).
        dtype: Compute dtype.
        param_dtype: Parameter dtype.
        rngs: Initialization RNGs (unused by the zero initializer, kept for a uniform API).
    """

    def __init__(
        self,
        cond_dim: int,
        dim: int,
        *,
        num_sublayers: int = 3,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.num_sublayers = num_sublayers
        self.proj = nnx.Linear(
            cond_dim,
            3 * num_sublayers * dim,
            dot_general=matmul.dot_general,
            dtype=dtype,
            param_dtype=param_dtype,
            kernel_init=partitioned(nnx.initializers.zeros_init(), ("embed", None)),
            bias_init=nnx.initializers.zeros_init(),
            rngs=rngs,
        )

    def __call__(self, cond: jax.Array) -> list[Modulation]:
        """``cond [..., cond_dim]`` -> one :class:`Modulation` ([..., dim] each) per sublayer."""
        parts = jnp.split(self.proj(jax.nn.silu(cond)), 3 * self.num_sublayers, axis=-1)
        return [Modulation(*parts[3 * i : 3 * i + 3]) for i in range(self.num_sublayers)]

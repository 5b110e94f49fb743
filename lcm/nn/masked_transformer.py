"""A pre-norm Transformer stack (RMSNorm, RoPE self-attention, SwiGLU) under explicit masks.

This is the backbone of every concept model: the Base-LCM decoder, the Two-Tower
contextualizer, the One-Tower model and the Quant-LCM. The full pass takes a
``[batch, T, T]`` mask built by the caller (causal within a document for packed rows, or the
One-Tower clean/noisy pattern); :meth:`MaskedTransformer.decode` runs new positions against a
KV cache and equals the full pass under the causal mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lcm.nn.attention import KVCache
from lcm.nn.norms import RMSNorm
from lcm.nn.transformer import call_block, make_block, split_rng


class MaskedTransformer(nnx.Module):
    """A stack of :class:`~lcm.nn.transformer.Block` (RMSNorm, RoPE self-attention, SwiGLU)
    followed by a final RMSNorm.

    Args:
        d_model: Model width.
        num_layers: Number of blocks.
        num_heads: Attention heads.
        mlp_dim: SwiGLU hidden width.
        rope_base: RoPE base.
        dropout_rate: Residual dropout.
        remat: Rematerialize each block in the backward pass of the full pass.
        dtype: Compute dtype.
        param_dtype: Parameter dtype.
        rngs: Initialization RNGs.
    """

    def __init__(
        self,
        d_model: int,
        num_layers: int,
        num_heads: int,
        mlp_dim: int,
        *,
        rope_base: float = 10000.0,
        dropout_rate: float = 0.0,
        remat: bool = False,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.remat = remat
        self.blocks = nnx.List(
            [
                make_block(
                    d_model,
                    num_heads,
                    mlp_dim,
                    num_layers=num_layers,
                    ffn="swiglu",
                    norm="rmsnorm",
                    rope_base=rope_base,
                    dropout_rate=dropout_rate,
                    dtype=dtype,
                    param_dtype=param_dtype,
                    rngs=rngs,
                )
                for _ in range(num_layers)
            ]
        )
        self.final_norm = RMSNorm(d_model, dtype=dtype, param_dtype=param_dtype)

    def __call__(
        self,
        x: jax.Array,
        mask: jax.Array,
        positions: jax.Array,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        """Full pass.

        Args:
            x: [B, T, d_model].
            mask: [B, T, T] bool, True where a query may attend to a key.
            positions: RoPE positions [B, T].
            rng: Dropout key, or None.

        Returns:
            [B, T, d_model].
        """
        for block, r in zip(self.blocks, split_rng(rng, len(self.blocks))):
            x = call_block(block, x, mask=mask, positions=positions, rng=r, remat=self.remat)
        return self.final_norm(x)

    def init_cache(self, batch: int, max_len: int) -> list[KVCache]:
        """Empty KV caches (one per block) for up to ``max_len`` positions."""
        return [block.init_cache(batch, max_len) for block in self.blocks]

    def decode(
        self,
        x: jax.Array,
        caches: list[KVCache],
        index: jax.Array,
        first: jax.Array | None = None,
        *,
        last_only: bool = False,
    ) -> tuple[jax.Array, list[KVCache]]:
        """Causal pass of new positions ``index .. index+T-1`` against the caches.

        Args:
            x: [B, T, d_model].
            caches: One cache per block, holding positions ``< index``.
            index: Position of ``x[:, 0]`` (scalar int32).
            first: [B] first real slot of each left-padded row, or None (no padding).
            last_only: Return only the last position's output, [B, 1, d_model]. The final
                block then runs its attention and feed-forward layer for that position
                alone: a prompt's prefill needs no more.

        Returns:
            [B, T, d_model] (or [B, 1, d_model]) and the caches with the new positions
            written.
        """
        x, new_caches = self._decode_before_final(x, caches, index, first)
        x, cache = self.blocks[-1].decode(x, caches[-1], index, first=first, last_only=last_only)
        return self.final_norm(x), [*new_caches, cache]

    def fill_cache(
        self,
        x: jax.Array,
        caches: list[KVCache],
        index: jax.Array,
        first: jax.Array | None = None,
    ) -> list[KVCache]:
        """Write new positions ``index .. index+T-1`` ([B, T, d_model]) to the caches when
        their outputs are not needed: the final block only projects its keys and values."""
        x, new_caches = self._decode_before_final(x, caches, index, first)
        return [*new_caches, self.blocks[-1].write(x, caches[-1], index)]

    def _decode_before_final(
        self,
        x: jax.Array,
        caches: list[KVCache],
        index: jax.Array,
        first: jax.Array | None,
    ) -> tuple[jax.Array, list[KVCache]]:
        """Every block but the final one over the new positions: the final block's input
        [B, T, d_model] and the updated caches of the blocks before it."""
        new_caches = []
        for block, cache in zip(self.blocks, caches[:-1]):  # zip stops before the final block
            x, cache = block.decode(x, cache, index, first=first)
            new_caches.append(cache)
        return x, new_caches

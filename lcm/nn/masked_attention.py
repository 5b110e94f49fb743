"""Self- and cross-attention with an arbitrary per-query boolean mask.

The concept models need masks that are neither plain causal nor plain padding: packed rows
(attend within one document only), the One-Tower clean/noisy pattern and the Two-Tower shifted
causal cross-attention with classifier-free-guidance dropping. These subclasses add one
``attend`` method taking a ``[batch, queries, keys]`` mask and keep the parent's parameters,
KV cache and incremental ``decode`` unchanged.
"""

from __future__ import annotations

import jax

from lcm.nn.attention import CrossAttention, HeadsFirstMemoryKV, MemoryKV, SelfAttention


class MaskedSelfAttention(SelfAttention):
    """:class:`SelfAttention` plus attention under a full boolean mask."""

    def attend(self, x: jax.Array, mask: jax.Array, positions: jax.Array) -> jax.Array:
        """Attend over the sequence under ``mask``.

        Args:
            x: [B, T, d_model].
            mask: [B, T, T] bool; ``mask[b, q, k]`` is True where query ``q`` may attend to
                key ``k``. Every row needs at least one True entry.
            positions: RoPE positions, [B, T] or [T].

        Returns:
            [B, T, d_model].
        """
        q, k, v = self._project(x, positions)
        out = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None])
        return self._merge(out)


class MaskedCrossAttention(CrossAttention):
    """:class:`CrossAttention` plus attention under a per-query boolean mask."""

    def attend(
        self, x: jax.Array, memory: MemoryKV | HeadsFirstMemoryKV, mask: jax.Array
    ) -> jax.Array:
        """Attend from ``x`` [B, T, d_model] to ``memory`` (S keys) under ``mask`` [B, T, S].

        Every row of ``mask`` needs at least one True entry; ``memory.mask`` is ignored.
        """
        if self.single_key:
            raise ValueError("a single-key cross-attention has nothing to mask")
        return self.attend_keys(x, memory, mask[:, None])

"""Pre-LN Transformer blocks: a bidirectional encoder block and a causal decoder block with
optional cross-attention and a KV cache for incremental decoding.

Randomness (dropout) comes from an explicit ``rng`` argument, so modules hold no RNG state.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lcm.nn.attention import Attention, KVCache, MemoryKV
from lcm.nn.ffn import FfnKind, make_ffn
from lcm.nn.norms import NormKind, make_norm


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    """Inverted dropout; the identity when ``rng`` is None (inference) or ``rate`` is 0."""
    if rng is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def split_rng(rng: jax.Array | None, n: int) -> list[jax.Array | None]:
    """``n`` independent keys from ``rng``, or ``n`` Nones when there is no randomness."""
    return [None] * n if rng is None else list(jax.random.split(rng, n))


def _apply(block: nnx.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return block(*args, **kwargs)


# Save nothing inside a block: the backward pass recomputes it from the block's input, so a
# stack keeps one [B, T, d_model] activation per block instead of all of a block's
# intermediates (attention scores, feed-forward hidden). The price is one more forward pass.
# (nnx.remat resolves keyword arguments to positions, so they travel as one dict argument.)
_apply_remat = nnx.remat(_apply, policy=jax.checkpoint_policies.nothing_saveable)


def call_block(block: nnx.Module, *args: Any, remat: bool = False, **kwargs: Any) -> Any:
    """``block(*args, **kwargs)``, rematerialized in the backward pass when ``remat``.

    The stacks call their blocks through this on the training path, so per-block activation
    checkpointing is one config switch; it changes no parameter and no result (up to float
    reassociation), only what is kept in memory between the forward and backward passes.

    Args:
        block: The block module.
        *args: Positional arguments of the block.
        remat: Wrap the call in ``nnx.remat`` (``jax.checkpoint``).
        **kwargs: Keyword arguments of the block.

    Returns:
        The block's output.
    """
    return (_apply_remat if remat else _apply)(block, args, kwargs)


class EncoderBlock(nnx.Module):
    """``x + attn(norm(x))``, then ``x + ffn(norm(x))``, bidirectional and padding-masked.

    Args:
        d_model: Model width.
        num_heads: Attention heads.
        mlp_dim: Feed-forward hidden width.
        num_layers: Depth of the whole stack; residual output projections are initialized
            with variance scaled by ``1 / (2 * num_layers)`` so the residual stream stays
            at unit scale with depth.
        ffn: "gelu" or "swiglu".
        norm: "layernorm" or "rmsnorm".
        rope_base: RoPE base, or None for no RoPE.
        dropout_rate: Residual dropout.
        dtype: Compute dtype.
        param_dtype: Parameter dtype.
        rngs: Initialization RNGs.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        mlp_dim: int,
        *,
        num_layers: int = 1,
        ffn: FfnKind = "gelu",
        norm: NormKind = "layernorm",
        rope_base: float | None = None,
        dropout_rate: float = 0.0,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = {"dtype": dtype, "param_dtype": param_dtype}
        out_scale = 1.0 / (2 * num_layers)
        self.dropout_rate = dropout_rate
        self.attn_norm = make_norm(norm, d_model, **kw)
        self.attention = Attention(
            d_model, num_heads, rope_base=rope_base, out_scale=out_scale, rngs=rngs, **kw
        )
        self.ffn_norm = make_norm(norm, d_model, **kw)
        self.ffn = make_ffn(ffn, d_model, mlp_dim, out_scale=out_scale, rngs=rngs, **kw)

    def __call__(
        self,
        x: jax.Array,
        *,
        mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        """[B, T, d_model] -> [B, T, d_model]; ``mask`` [B, T] marks real tokens."""
        r_attn, r_ffn = split_rng(rng, 2)
        h = self.attention(self.attn_norm(x), mask=mask, positions=positions)
        x = x + dropout(h, self.dropout_rate, r_attn)
        return x + dropout(self.ffn(self.ffn_norm(x)), self.dropout_rate, r_ffn)


class DecoderBlock(nnx.Module):
    """Causal self-attention, optional cross-attention to a memory, then a feed-forward layer.

    Args:
        d_model: Model width.
        num_heads: Attention heads.
        mlp_dim: Feed-forward hidden width.
        num_layers: Depth of the whole stack (residual projection init, see EncoderBlock).
        cross_attention: Add a cross-attention sublayer.
        memory_dim: Width of the memory (default d_model).
        single_key_memory: The memory is always one vector (see :class:`Attention`, "single_key").
        ffn: "gelu" or "swiglu".
        norm: "layernorm" or "rmsnorm".
        rope_base: RoPE base for self-attention, or None.
        dropout_rate: Residual dropout.
        dtype: Compute dtype.
        param_dtype: Parameter dtype.
        rngs: Initialization RNGs.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        mlp_dim: int,
        *,
        num_layers: int = 1,
        cross_attention: bool = True,
        memory_dim: int | None = None,
        single_key_memory: bool = False,
        ffn: FfnKind = "gelu",
        norm: NormKind = "layernorm",
        rope_base: float | None = None,
        dropout_rate: float = 0.0,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = {"dtype": dtype, "param_dtype": param_dtype}
        out_scale = 1.0 / (2 * num_layers)
        self.dropout_rate = dropout_rate
        self.self_norm = make_norm(norm, d_model, **kw)
        self.self_attention = Attention(
            d_model, num_heads, rope_base=rope_base, out_scale=out_scale, rngs=rngs, **kw
        )
        if cross_attention:
            self.cross_norm = make_norm(norm, d_model, **kw)
            self.cross_attention = Attention(
                d_model,
                num_heads,
                kind="single_key" if single_key_memory else "cross",
                memory_dim=memory_dim,
                out_scale=out_scale,
                rngs=rngs,
                **kw,
            )
        else:
            self.cross_norm = None
            self.cross_attention = None
        self.ffn_norm = make_norm(norm, d_model, **kw)
        self.ffn = make_ffn(ffn, d_model, mlp_dim, out_scale=out_scale, rngs=rngs, **kw)

    def _cross_and_ffn(
        self,
        x: jax.Array,
        memory: MemoryKV | None,
        r_cross: jax.Array | None,
        r_ffn: jax.Array | None,
    ) -> jax.Array:
        if self.cross_attention is not None:
            if memory is None:
                raise ValueError("this decoder block has cross-attention: pass a memory")
            h = self.cross_attention(self.cross_norm(x), memory)
            x = x + dropout(h, self.dropout_rate, r_cross)
        return x + dropout(self.ffn(self.ffn_norm(x)), self.dropout_rate, r_ffn)

    def __call__(
        self,
        x: jax.Array,
        memory: MemoryKV | None = None,
        *,
        mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        """Full causal pass (training / scoring).

        Args:
            x: [B, T, d_model].
            memory: Projected memory (``cross_attention.project_memory``), if any.
            mask: Optional key padding mask [B, T] (right padding needs none: causal
                attention never reaches it from a real position).
            positions: Positions for RoPE, [B, T] or [T].
            rng: Dropout key, or None.

        Returns:
            [B, T, d_model].
        """
        r_self, r_cross, r_ffn = split_rng(rng, 3)
        h = self.self_attention(self.self_norm(x), mask=mask, causal=True, positions=positions)
        x = x + dropout(h, self.dropout_rate, r_self)
        return self._cross_and_ffn(x, memory, r_cross, r_ffn)

    def decode(
        self, x: jax.Array, memory: MemoryKV | None, cache: KVCache, index: jax.Array
    ) -> tuple[jax.Array, KVCache]:
        """Incremental pass for positions ``index .. index+T-1``; equals the full causal pass.

        Args:
            x: [B, T, d_model].
            memory: Projected memory, if the block has cross-attention.
            cache: This block's self-attention cache.
            index: Position of ``x[:, 0]`` (scalar int32).

        Returns:
            [B, T, d_model] and the updated cache.
        """
        h, cache = self.self_attention.decode(self.self_norm(x), cache, index)
        return self._cross_and_ffn(x + h, memory, None, None), cache

"""Multi-head attention: one :class:`Attention` for self-attention (RoPE, a KV cache) and for
cross-attention to a memory, under a general mask (key padding, causal, or any per-query
pattern), on top of ``jax.nn.dot_product_attention``.

Shapes: ``B`` batch, ``T`` query length, ``S`` key length, ``N`` heads, ``H`` head dim.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcm.nn import matmul
from lcm.nn.embeddings import apply_rope
from lcm.nn.params import kernel_init, partitioned


class KVCache(NamedTuple):
    """Keys and values of the positions decoded so far (RoPE already applied to keys).

    Heads come before slots, so that attention of new queries reads the cache as stored
    (a ``[batch, slots, heads, head_dim]`` cache is transposed whole at every step).

    Attributes:
        key: [batch, heads, max_len, head_dim].
        value: [batch, heads, max_len, head_dim].
    """

    key: jax.Array
    value: jax.Array

    @classmethod
    def zeros(
        cls, batch: int, max_len: int, num_heads: int, head_dim: int, dtype: jnp.dtype
    ) -> KVCache:
        """An empty cache for ``max_len`` positions."""
        shape = (batch, num_heads, max_len, head_dim)
        return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))

    @property
    def max_len(self) -> int:
        """Slots in the cache."""
        return self.key.shape[2]

    def write(self, key: jax.Array, value: jax.Array, index: jax.Array) -> KVCache:
        """The cache with ``key``/``value`` [B, T, N, H] stored at slots ``index .. index+T-1``."""
        start = (0, 0, index, 0)
        return KVCache(
            jax.lax.dynamic_update_slice(
                self.key, jnp.swapaxes(key, 1, 2).astype(self.key.dtype), start
            ),
            jax.lax.dynamic_update_slice(
                self.value, jnp.swapaxes(value, 1, 2).astype(self.value.dtype), start
            ),
        )


def heads_first_attention(
    query: jax.Array, key: jax.Array, value: jax.Array, mask: jax.Array | None
) -> jax.Array:
    """Attention to keys and values stored heads before slots, read in that layout.

    ``jax.nn.dot_product_attention`` takes ``[B, S, N, H]`` keys and transposes them at every
    call; a KV cache or a memory reused over many steps is stored ``[B, N, S, H]`` instead.

    Args:
        query: [B, T, N, H].
        key: [B, N, S, H].
        value: [B, N, S, H].
        mask: Broadcastable to [B, N, T, S]; True where a query may attend to a slot (every
            query row needs at least one), or None.

    Returns:
        [B, T, N, H].
    """
    scale = query.shape[-1] ** -0.5
    scores = jnp.einsum("btnh,bnsh->bnts", query * scale, key.astype(query.dtype))
    scores = scores.astype(jnp.float32)
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(query.dtype)
    return jnp.einsum("bnts,bnsh->btnh", weights, value.astype(query.dtype))


def cached_attention(query: jax.Array, cache: KVCache, mask: jax.Array) -> jax.Array:
    """Attention of new queries to every cache slot, reading the cache in its own layout.

    Args:
        query: [B, T, N, H] (RoPE applied).
        cache: Keys and values, [B, N, S, H], the queries' own positions already written.
        mask: Broadcastable to [B, N, T, S]; True where a query may attend to a slot. Every
            query row needs at least one True entry.

    Returns:
        [B, T, N, H].
    """
    return heads_first_attention(query, cache.key, cache.value, mask)


class MemoryKV(NamedTuple):
    """A cross-attention memory projected once, reused at every query position/step.

    Attributes:
        key: [batch, mem_len, heads, head_dim], or None for a single-slot memory.
        value: [batch, mem_len, heads, head_dim].
        mask: [batch, mem_len] bool (True = attend), or None for no padding.
    """

    key: jax.Array | None
    value: jax.Array
    mask: jax.Array | None

    def heads_first(self) -> HeadsFirstMemoryKV:
        """The same memory stored heads before slots (see :class:`HeadsFirstMemoryKV`)."""
        key = None if self.key is None else self.key.swapaxes(1, 2)
        return HeadsFirstMemoryKV(key, self.value.swapaxes(1, 2), self.mask)


class HeadsFirstMemoryKV(NamedTuple):
    """A :class:`MemoryKV` stored heads before slots, for a memory reused over many steps.

    ``jax.nn.dot_product_attention`` transposes ``[B, S, N, H]`` keys and values at every call,
    and XLA does not hoist that copy out of a loop: in the DDIM loop of Two-Tower generation
    (40 denoiser calls per concept) it took a quarter of the time at batch 32. Attention reads
    this layout as stored; training keeps :class:`MemoryKV`, where each memory serves one call.

    Attributes:
        key: [batch, heads, mem_len, head_dim], or None for a single-slot memory.
        value: [batch, heads, mem_len, head_dim].
        mask: [batch, mem_len] bool (True = attend), or None for no padding.
    """

    key: jax.Array | None
    value: jax.Array
    mask: jax.Array | None


AttentionKind = Literal["self", "cross", "single_key"]


def attention_mask(mask: jax.Array | None) -> jax.Array | None:
    """A mask in the layout attention broadcasts, ``[B, N, T, S]``.

    Args:
        mask: None (attend everywhere); [B, S], a key padding mask (True = real key); or
            [B, T, S], a per-query mask (``mask[b, q, k]`` True where query ``q`` may attend
            to key ``k``); or already [B, N or 1, T or 1, S]. Every query row needs at
            least one True entry.

    Returns:
        ``mask`` broadcastable to [B, N, T, S], or None.
    """
    if mask is None or mask.ndim == 4:
        return mask
    if mask.ndim == 2:
        return mask[:, None, None, :]
    if mask.ndim == 3:
        return mask[:, None]
    raise ValueError(f"an attention mask is [B, S], [B, T, S] or [B, N, T, S], got {mask.shape}")


class Attention(nnx.Module):
    """Multi-head attention under a general mask, with an optional KV cache.

    One module for every attention sublayer; ``kind`` picks where keys come from (and so which
    projections it holds, i.e. its parameter paths):

    * ``"self"``: keys are the queries' own sequence, through one fused ``qkv`` projection,
      with optional RoPE. :meth:`__call__` attends over the whole sequence under a mask (and
      ``causal``); :meth:`decode` runs new positions against a :class:`KVCache`.
    * ``"cross"``: keys are a memory (an encoder output, a context), projected once by
      :meth:`project_memory` through a fused ``key_value`` projection and reused for every
      query and step; queries go through ``query``.
    * ``"single_key"``: a memory of exactly one vector. Softmax over one key is identically 1,
      so the sublayer reduces exactly to ``out(value(memory))`` broadcast over the queries; the
      query and key projections would get no gradient and are not created. Called without a
      memory, each position attends to itself only (its own input is its one key).

    Args:
        d_model: Query (and output) width.
        num_heads: Number of heads.
        kind: "self", "cross" or "single_key" (see above).
        memory_dim: Memory width for "cross"/"single_key" (default ``d_model``).
        head_dim: Per-head width (default ``d_model // num_heads``).
        rope_base: Apply rotary embeddings to self-attention queries and keys with this base;
            None for no RoPE (absolute positions are then added to the inputs by the caller).
        out_scale: Initializer variance scale of the output projection.
        dtype: Compute dtype.
        param_dtype: Parameter dtype.
        rngs: Initialization RNGs.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        kind: AttentionKind = "self",
        memory_dim: int | None = None,
        head_dim: int | None = None,
        rope_base: float | None = None,
        out_scale: float = 1.0,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if kind not in ("self", "cross", "single_key"):
            raise ValueError(f"unknown attention kind {kind!r}")
        self.kind = kind
        self.num_heads = num_heads
        self.head_dim = head_dim or d_model // num_heads
        self.rope_base = rope_base
        self.dtype = dtype
        memory_dim = memory_dim or d_model
        inner = num_heads * self.head_dim
        dense_kw = {"use_bias": False, "dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
        fused_kw = {
            "einsum_op": matmul.einsum,
            "dtype": dtype,
            "param_dtype": param_dtype,
            "kernel_init": partitioned(kernel_init(batch_axis=(1,)), ("embed", None, "heads")),
            "rngs": rngs,
        }
        if kind == "self":
            self.qkv = nnx.Einsum("...d,dkh->...kh", (d_model, 3, inner), **fused_kw)
        elif kind == "single_key":
            self.value = matmul.dense(memory_dim, inner, ("embed", "heads"), **dense_kw)
        else:
            self.query = matmul.dense(d_model, inner, ("embed", "heads"), **dense_kw)
            self.key_value = nnx.Einsum("...d,dkh->...kh", (memory_dim, 2, inner), **fused_kw)
        self.out = matmul.dense(inner, d_model, ("heads", "embed"), scale=out_scale, **dense_kw)

    @property
    def single_key(self) -> bool:
        """The memory is one vector (see the class docstring)."""
        return self.kind == "single_key"

    def _project(self, x: jax.Array, positions: jax.Array) -> tuple[jax.Array, ...]:
        """Self-attention inputs [B, T, d] -> q, k, v each [B, T, N, H] (RoPE applied to q, k)."""
        qkv = self.qkv(x).reshape(*x.shape[:-1], 3, self.num_heads, self.head_dim)
        q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
        if self.rope_base is not None:
            q = apply_rope(q, positions, self.rope_base)
            k = apply_rope(k, positions, self.rope_base)
        return q, k, v

    def _merge(self, out: jax.Array) -> jax.Array:
        """Attended values [..., N, H] -> the output projection [..., d_model]."""
        return self.out(out.reshape(*out.shape[:-2], self.num_heads * self.head_dim))

    def __call__(
        self,
        x: jax.Array,
        memory: MemoryKV | HeadsFirstMemoryKV | None = None,
        *,
        mask: jax.Array | None = None,
        causal: bool = False,
        positions: jax.Array | None = None,
    ) -> jax.Array:
        """Attend from ``x`` [B, T, d_model] to its own sequence, or to ``memory``.

        Args:
            x: [B, T, d_model].
            memory: From :meth:`project_memory` (either layout), for "cross" and "single_key";
                None for self-attention (and for a "single_key" attention to itself).
            mask: See :func:`attention_mask`: a key padding mask [B, S] (padded keys are never
                attended, so outputs at real positions do not depend on pad contents), or a
                per-query mask [B, T, S]. A memory's own padding mask applies as well.
            causal: Each position attends only to itself and earlier positions (self).
            positions: Token positions [B, T] or [T] for RoPE (default ``arange(T)``).

        Returns:
            [B, T, d_model].
        """
        if self.kind == "single_key":
            if mask is not None:
                raise ValueError("a single-key attention has nothing to mask")
            if memory is None:  # each position is its own single key
                b, t, d = x.shape
                flat = x.reshape(b * t, 1, d)
                return self(flat, self.project_memory(flat)).reshape(b, t, -1)
            # one slot: both memory layouts flatten alike
            out = self.out(memory.value.reshape(x.shape[0], 1, -1))
            return jnp.broadcast_to(out, (*x.shape[:-1], out.shape[-1]))
        if self.kind == "cross":
            if memory is None:
                raise ValueError("a cross-attention needs a memory")
            keys = attention_mask(memory.mask)
            if mask is not None:
                keys = attention_mask(mask) if keys is None else attention_mask(mask) & keys
            q = self.query(x).reshape(*x.shape[:-1], self.num_heads, self.head_dim)
            if isinstance(memory, HeadsFirstMemoryKV):
                out = heads_first_attention(q, memory.key, memory.value, keys)
            else:
                out = jax.nn.dot_product_attention(q, memory.key, memory.value, mask=keys)
            return self._merge(out)
        if positions is None:
            positions = np.arange(x.shape[1])  # static: constant RoPE tables
        q, k, v = self._project(x, positions)
        out = jax.nn.dot_product_attention(q, k, v, mask=attention_mask(mask), is_causal=causal)
        return self._merge(out)

    def project_memory(self, memory: jax.Array, mask: jax.Array | None = None) -> MemoryKV:
        """Project a memory once ("cross" and "single_key"; reused for every query and step).

        Args:
            memory: [B, S, memory_dim].
            mask: [B, S] bool (True = attend), or None.

        Returns:
            The projected memory.
        """
        heads = (self.num_heads, self.head_dim)
        if self.single_key:
            if memory.shape[1] != 1 or mask is not None:
                raise ValueError(
                    f"single_key attention needs an unmasked memory of length 1, got "
                    f"shape {memory.shape}{' with a mask' if mask is not None else ''}"
                )
            value = self.value(memory).reshape(*memory.shape[:2], *heads)
            return MemoryKV(None, value, None)
        kv = self.key_value(memory).reshape(*memory.shape[:2], 2, *heads)
        return MemoryKV(kv[:, :, 0], kv[:, :, 1], mask)

    def init_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty KV cache for incremental decoding of up to ``max_len`` positions (self)."""
        return KVCache.zeros(batch, max_len, self.num_heads, self.head_dim, self.dtype)

    def write(self, x: jax.Array, cache: KVCache, index: jax.Array) -> KVCache:
        """Write the keys/values of new positions ``index .. index+T-1`` ([B, T, d_model])
        to the cache without attending (nothing downstream needs their output)."""
        _, k, v = self._project(x, index + jnp.arange(x.shape[1]))
        return cache.write(k, v, index)

    def decode(
        self,
        x: jax.Array,
        cache: KVCache,
        index: jax.Array,
        first: jax.Array | None = None,
        *,
        last_only: bool = False,
    ) -> tuple[jax.Array, KVCache]:
        """Causal self-attention for new positions ``index .. index+T-1`` against the cache.

        Args:
            x: New positions, [B, T, d_model] (T = 1 per step, or a prompt).
            cache: Keys/values of positions ``< index``.
            index: Position of the first new token (scalar int32).
            first: [B] int32, the first real slot of each row: rows of different lengths
                are left-padded, and no real position attends to a padding slot before it.
                RoPE depends on relative positions only, so a left-padded row computes what
                it would alone. None: every slot is real.
            last_only: Write every new position to the cache but attend from the last one
                only (a prompt's final block needs no other output).

        Returns:
            The output [B, T, d_model] ([B, 1, d_model] with ``last_only``) and the cache
            with the new keys/values written.
        """
        positions = index + jnp.arange(x.shape[1])
        q, k, v = self._project(x, positions)
        cache = cache.write(k, v, index)
        if last_only:
            q, positions = q[:, -1:], positions[-1:]
        # Cache slots past the newest position hold zeros or stale values: mask them out.
        slots = jnp.arange(cache.max_len)
        mask = (slots[None, :] <= positions[:, None])[None, None]  # [1, 1, T, S]
        if first is not None:
            # Padding queries keep their causal view, so that no query row is empty.
            real = (slots[None, None, :] >= first[:, None, None]) | (
                positions[None, :, None] < first[:, None, None]
            )  # [B, T, S]
            mask = mask & real[:, None]
        out = cached_attention(q, cache, mask)
        return self._merge(out), cache

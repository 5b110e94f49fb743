"""One pre-norm Transformer :class:`Block` for every stack: the codec's encoder and decoder,
the concept models' causal towers, the Two-Tower denoiser (through optional cross-attention and
AdaLN modulation) and SONAR's layers (through their fairseq2 attribute names).

Randomness (dropout) comes from an explicit ``rng`` argument, so modules hold no RNG state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lcm.nn.adaln import AdaLNModulator, Modulation, modulate
from lcm.nn.attention import Attention, AttentionKind, HeadsFirstMemoryKV, KVCache, MemoryKV
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


# Attribute names (so parameter paths) of each sublayer's norm and module, as checkpoints hold
# them: a block without cross-attention calls its self-attention ``attention``, one with
# cross-attention ``self_attention`` beside ``cross_attention``. A norm name None: no norm.
BlockNames = dict[str, tuple[str | None, str]]
PLAIN_NAMES: BlockNames = {"attention": ("attn_norm", "attention"), "ffn": ("ffn_norm", "ffn")}
CROSS_NAMES: BlockNames = {
    "attention": ("self_norm", "self_attention"),
    "cross_attention": ("cross_norm", "cross_attention"),
    "ffn": ("ffn_norm", "ffn"),
}


def residual_scale(num_layers: int) -> float:
    """Initializer variance scale of a residual branch's output projection in a stack of
    ``num_layers`` blocks: ``1 / (2 * num_layers)``, so the residual stream stays at unit
    scale with depth."""
    return 1.0 / (2 * num_layers)


class Block(nnx.Module):
    """A pre-norm Transformer block: residual sublayers ``x + f(norm(x))``.

    The sublayers, in order: self-attention, cross-attention to a memory (optional), a
    feed-forward layer. With ``modulation`` (the denoiser's AdaLN), each sublayer is
    ``x + gate * f(norm(x) * (1 + scale) + shift)`` with shift, scale and gate computed from a
    conditioning vector (see :mod:`lcm.nn.adaln`). Dropout applies to each residual branch.

    The sublayers are built by the caller (see :func:`make_block` for the usual ones): any
    module with :class:`~lcm.nn.attention.Attention`'s call does as attention, so the denoiser's
    attention to itself alone and SONAR's fairseq2 attention are blocks too.

    Args:
        norm: Builds one norm; called once per sublayer that has a norm.
        attention: Self-attention: ``attention(h, mask=, causal=, positions=)``; with a KV
            cache ``decode``, ``write`` and ``init_cache`` as :class:`Attention`'s.
        ffn: Feed-forward layer ``[..., d] -> [..., d]``.
        cross_attention: Attention to a memory, ``cross_attention(h, memory, mask=)``, with
            ``project_memory``; None for none.
        modulation: AdaLN modulator giving one :class:`~lcm.nn.adaln.Modulation` per
            sublayer; None for none.
        causal: The self-attention is causal (on top of any mask) in the full pass.
        dropout_rate: Residual dropout.
        names: Attribute names ``{"attention" | "cross_attention" | "ffn": (norm, module)}``
            (default :data:`PLAIN_NAMES`, or :data:`CROSS_NAMES` with cross-attention); a
            norm name None leaves that sublayer without a norm. The AdaLN modulator is
            ``modulator``.
    """

    def __init__(
        self,
        norm: Callable[[], nnx.Module],
        attention: nnx.Module,
        ffn: nnx.Module,
        *,
        cross_attention: nnx.Module | None = None,
        modulation: AdaLNModulator | None = None,
        causal: bool = False,
        dropout_rate: float = 0.0,
        names: BlockNames | None = None,
    ):
        modules = {"attention": attention, "cross_attention": cross_attention, "ffn": ffn}
        names = names or (PLAIN_NAMES if cross_attention is None else CROSS_NAMES)
        roles = [role for role in modules if modules[role] is not None]
        if set(names) != set(roles):
            raise ValueError(f"names {sorted(names)} do not name the sublayers {roles}")
        self.causal = causal
        self.dropout_rate = dropout_rate
        self.sublayers = tuple((role, *names[role]) for role in roles)
        for role, norm_name, name in self.sublayers:
            if norm_name is not None:
                setattr(self, norm_name, norm())
            setattr(self, name, modules[role])
        self.modulator = modulation

    def _part(self, role: str) -> tuple[nnx.Module | None, nnx.Module]:
        """The norm (or None) and the module of a sublayer."""
        for r, norm_name, name in self.sublayers:
            if r == role:
                norm = None if norm_name is None else getattr(self, norm_name)
                return norm, getattr(self, name)
        raise ValueError(f"this block has no {role}")

    def _residual(
        self,
        i: int,
        x: jax.Array,
        f: Callable[[jax.Array], jax.Array],
        mods: list[Modulation] | None,
        rng: jax.Array | None,
    ) -> jax.Array:
        """``x + dropout(f(norm(x)))`` of sublayer ``i``, modulated when ``mods``."""
        norm, _ = self._part(self.sublayers[i][0])
        h = x if norm is None else norm(x)
        if mods is not None:
            h = modulate(h, mods[i])
        h = dropout(f(h), self.dropout_rate, rng)
        return x + (h if mods is None else mods[i].gate * h)

    def __call__(
        self,
        x: jax.Array,
        memory: MemoryKV | HeadsFirstMemoryKV | Any | None = None,
        *,
        mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        memory_mask: jax.Array | None = None,
        cond: jax.Array | None = None,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        """Full pass (training / scoring / encoding).

        Args:
            x: [B, T, d_model].
            memory: This block's projected memory (:meth:`project_memory`), with
                cross-attention.
            mask: Self-attention mask (see :func:`~lcm.nn.attention.attention_mask`): key
                padding [B, T] or per query [B, T, T]. Right padding of a causal block needs
                none: causal attention never reaches it from a real position.
            positions: Positions for RoPE, [B, T] or [T].
            memory_mask: Per-query cross-attention mask [B, T, S], on top of the memory's own.
            cond: [B, T, d] conditioning of the AdaLN modulation.
            rng: Dropout key, or None.

        Returns:
            [B, T, d_model].
        """
        mods = None if self.modulator is None else self.modulator(cond)
        for i, (role, r) in enumerate(zip(self._roles, split_rng(rng, len(self.sublayers)))):
            _, layer = self._part(role)
            if role == "attention":
                f = functools.partial(layer, mask=mask, causal=self.causal, positions=positions)
            elif role == "cross_attention":
                if memory is None:
                    raise ValueError("this block has cross-attention: pass a memory")
                f = functools.partial(layer, memory=memory, mask=memory_mask)
            else:
                f = layer
            x = self._residual(i, x, f, mods, r)
        return x

    @property
    def _roles(self) -> tuple[str, ...]:
        return tuple(role for role, _, _ in self.sublayers)

    def decode(
        self,
        x: jax.Array,
        cache: KVCache,
        index: jax.Array,
        memory: MemoryKV | Any | None = None,
        *,
        first: jax.Array | None = None,
        last_only: bool = False,
    ) -> tuple[jax.Array, KVCache]:
        """Incremental causal pass for positions ``index .. index+T-1`` against ``cache``;
        equals the full causal pass.

        Args:
            x: [B, T, d_model].
            cache: This block's self-attention cache (positions ``< index``).
            index: Position of ``x[:, 0]`` (scalar int32).
            memory: Projected memory, if the block has cross-attention.
            first: [B] first real slot of each left-padded row, or None (see
                :meth:`Attention.decode`).
            last_only: Cache every position but compute the last one's output only.

        Returns:
            [B, T, d_model] ([B, 1, d_model] with ``last_only``) and the updated cache.
        """
        if self.modulator is not None:
            raise ValueError("a modulated block has no incremental pass")
        norm, attention = self._part("attention")
        h, cache = attention.decode(norm(x), cache, index, first, last_only=last_only)
        x = (x[:, -1:] if last_only else x) + h
        for i, role in enumerate(self._roles[1:], start=1):
            _, layer = self._part(role)
            f = functools.partial(layer, memory=memory) if role == "cross_attention" else layer
            x = self._residual(i, x, f, None, None)
        return x, cache

    def write(self, x: jax.Array, cache: KVCache, index: jax.Array) -> KVCache:
        """Write the self-attention keys/values of positions ``index ..`` ([B, T, d_model]) to
        ``cache`` without computing any output."""
        norm, attention = self._part("attention")
        return attention.write(norm(x), cache, index)

    def init_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty self-attention KV cache for ``max_len`` positions."""
        return self._part("attention")[1].init_cache(batch, max_len)

    def project_memory(self, memory: jax.Array, mask: jax.Array | None = None) -> Any:
        """The cross-attention's projection of ``memory`` [B, S, d] (mask [B, S] or None)."""
        return self._part("cross_attention")[1].project_memory(memory, mask)


def make_block(
    d_model: int,
    num_heads: int,
    mlp_dim: int,
    *,
    num_layers: int = 1,
    causal: bool = False,
    cross_attention: AttentionKind | None = None,
    memory_dim: int | None = None,
    ffn: FfnKind = "gelu",
    norm: NormKind = "layernorm",
    rope_base: float | None = None,
    dropout_rate: float = 0.0,
    dtype: jnp.dtype = jnp.float32,
    param_dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
) -> Block:
    """The usual :class:`Block`: :class:`Attention` (RoPE or none), optional cross-attention,
    the feed-forward layer and norm named by ``ffn`` and ``norm``.

    Args:
        d_model: Model width.
        num_heads: Attention heads.
        mlp_dim: Feed-forward hidden width.
        num_layers: Depth of the whole stack (see :func:`residual_scale`).
        causal: Causal self-attention in the full pass.
        cross_attention: "cross" or "single_key" (the memory is always one vector) to add a
            cross-attention sublayer, or None.
        memory_dim: Width of the memory (default d_model).
        ffn: "gelu" or "swiglu".
        norm: "layernorm" or "rmsnorm".
        rope_base: RoPE base for self-attention, or None.
        dropout_rate: Residual dropout.
        dtype: Compute dtype.
        param_dtype: Parameter dtype.
        rngs: Initialization RNGs.
    """
    kw = {"dtype": dtype, "param_dtype": param_dtype}
    scale = residual_scale(num_layers)
    # Keyword order = initialization order (self-attention, cross-attention, feed-forward).
    return Block(
        lambda: make_norm(norm, d_model, **kw),
        attention=Attention(
            d_model, num_heads, rope_base=rope_base, out_scale=scale, rngs=rngs, **kw
        ),
        cross_attention=None
        if cross_attention is None
        else Attention(
            d_model,
            num_heads,
            kind=cross_attention,
            memory_dim=memory_dim,
            out_scale=scale,
            rngs=rngs,
            **kw,
        ),
        ffn=make_ffn(ffn, d_model, mlp_dim, out_scale=scale, rngs=rngs, **kw),
        causal=causal,
        dropout_rate=dropout_rate,
    )

"""The Two-Tower denoiser (paper section 2.3.4): noisy concept -> clean-concept estimate.

Each block has three residual sublayers, all modulated by the diffusion timestep through a
zero-initialized AdaLN (:mod:`lcm.nn.adaln`):

1. self-attention restricted to the position itself (the denoiser sees one noisy concept per
   position; attention over a single key reduces exactly to ``out(value(x))``);
2. cross-attention to the contextualizer outputs, with a zero vector prepended so a position
   with no visible context (the first concept, or a context dropped for classifier-free
   guidance) still attends to something;
3. a SwiGLU feed-forward layer.

Which context outputs each position may see is the caller's mask (shifted causal in training).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lcm.models.config import TransformerConfig
from lcm.nn import matmul
from lcm.nn.adaln import AdaLNModulator
from lcm.nn.attention import Attention, HeadsFirstMemoryKV, MemoryKV
from lcm.nn.ffn import SwiGlu
from lcm.nn.norms import RMSNorm
from lcm.nn.timestep import TimestepEmbedding
from lcm.nn.transformer import Block, call_block, residual_scale, split_rng


def denoiser_block(
    d_model: int,
    num_heads: int,
    mlp_dim: int,
    *,
    num_layers: int,
    dropout_rate: float,
    rngs: nnx.Rngs,
) -> Block:
    """One AdaLN-modulated :class:`~lcm.nn.transformer.Block` (see the module docstring).

    Args:
        d_model: Width.
        num_heads: Attention heads.
        mlp_dim: SwiGLU hidden width.
        num_layers: Depth of the stack (residual projection initialization).
        dropout_rate: Residual dropout.
        rngs: Initialization RNGs.
    """
    scale = residual_scale(num_layers)
    # Keyword order = initialization order.
    return Block(
        lambda: RMSNorm(d_model),
        attention=Attention(d_model, num_heads, kind="single_key", out_scale=scale, rngs=rngs),
        cross_attention=Attention(d_model, num_heads, kind="cross", out_scale=scale, rngs=rngs),
        ffn=SwiGlu(d_model, mlp_dim, out_scale=scale, rngs=rngs),
        modulation=AdaLNModulator(d_model, d_model, num_sublayers=3, rngs=rngs),
        dropout_rate=dropout_rate,
    )


class Denoiser(nnx.Module):
    """Input projection, timestep embedding, :func:`denoiser_block` stack, output projection.

    Args:
        concept_dim: D.
        d_model: Width (also the width of the context it attends to).
        cfg: Depth, heads, SwiGLU width and dropout of the stack.
        rngs: Initialization RNGs.
    """

    def __init__(self, concept_dim: int, d_model: int, cfg: TransformerConfig, rngs: nnx.Rngs):
        self.remat = cfg.remat
        self.in_proj = matmul.dense(concept_dim, d_model, ("concept", "embed"), rngs=rngs)
        self.time = TimestepEmbedding(d_model, rngs=rngs)
        self.blocks = nnx.List(
            [
                denoiser_block(
                    d_model,
                    cfg.num_heads,
                    cfg.mlp_dim,
                    num_layers=cfg.num_layers,
                    dropout_rate=cfg.dropout,
                    rngs=rngs,
                )
                for _ in range(cfg.num_layers)
            ]
        )
        self.final_norm = RMSNorm(d_model)
        self.out_proj = matmul.dense(d_model, concept_dim, ("embed", "concept"), rngs=rngs)

    def project_context(self, context: jax.Array) -> list[MemoryKV]:
        """Prepend the zero vector to ``context`` [B, S, d] and project it for every block.

        Returns:
            One memory of ``S + 1`` keys per block (key 0 is the zero vector).
        """
        zero = jnp.zeros_like(context[:, :1])
        full = jnp.concatenate([zero, context], axis=1)
        return [block.project_memory(full) for block in self.blocks]

    def __call__(
        self,
        x_t: jax.Array,
        t: jax.Array,
        memories: list[MemoryKV] | list[HeadsFirstMemoryKV],
        visible: jax.Array,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        """Estimate the clean concepts.

        Args:
            x_t: [B, T, D] noisy concepts.
            t: [B, T] (or broadcastable) integer diffusion timesteps.
            memories: From :meth:`project_context` over S context vectors.
            visible: [B, T, S] bool, which context vectors each position may see; the zero
                vector is always visible.
            rng: Dropout key, or None.

        Returns:
            [B, T, D] clean-concept estimates (x0-prediction).
        """
        b, n = x_t.shape[:2]
        mask = jnp.concatenate([jnp.ones((b, n, 1), bool), visible], axis=2)
        cond = self.time(jnp.broadcast_to(t, (b, n)))
        x = self.in_proj(x_t)
        keys = split_rng(rng, len(self.blocks))
        for block, memory, r in zip(self.blocks, memories, keys):
            x = call_block(block, x, memory, memory_mask=mask, cond=cond, rng=r, remat=self.remat)
        return self.out_proj(self.final_norm(x))

"""Layers every concept model builds the same way: the PreNet and PostNet projections between
concept space (D) and model width, and a causal Transformer stack from its config."""

from __future__ import annotations

from flax import nnx

from lcm.models.config import TransformerConfig
from lcm.nn import matmul
from lcm.nn.masked_transformer import MaskedTransformer


def prenet(concept_dim: int, d_model: int, rngs: nnx.Rngs) -> nnx.Linear:
    """Concepts ``[..., D]`` -> model width ``[..., d_model]`` (with bias)."""
    return matmul.dense(concept_dim, d_model, ("concept", "embed"), rngs=rngs)


def postnet(d_model: int, concept_dim: int, rngs: nnx.Rngs) -> nnx.Linear:
    """Model width ``[..., d_model]`` -> concepts ``[..., D]`` (with bias)."""
    return matmul.dense(d_model, concept_dim, ("embed", "concept"), rngs=rngs)


def causal_transformer(
    d_model: int, cfg: TransformerConfig, rope_base: float, rngs: nnx.Rngs
) -> MaskedTransformer:
    """The RoPE Transformer stack described by ``cfg`` (depth, heads, SwiGLU width, dropout)."""
    return MaskedTransformer(
        d_model,
        cfg.num_layers,
        cfg.num_heads,
        cfg.mlp_dim,
        rope_base=rope_base,
        dropout_rate=cfg.dropout,
        remat=cfg.remat,
        rngs=rngs,
    )

"""Shared neural-network layers for the codec and the LCM models (Flax NNX).

Every parameter carries logical axis names ("embed", "mlp", "heads", "vocab", "concept");
the trainer maps them to the device mesh.
"""

from lcm.nn.attention import (
    Attention,
    HeadsFirstMemoryKV,
    KVCache,
    MemoryKV,
    attention_mask,
    cached_attention,
    heads_first_attention,
)
from lcm.nn.embeddings import LearnedPositions, TokenEmbedding, apply_rope, sinusoidal_positions
from lcm.nn.ffn import FfnKind, GeluMlp, SwiGlu, make_ffn
from lcm.nn.norms import LayerNorm, NormKind, RMSNorm, make_norm
from lcm.nn.params import kernel_init, param, partitioned
from lcm.nn.transformer import (
    Block,
    call_block,
    dropout,
    make_block,
    residual_scale,
    split_rng,
)

__all__ = [
    "Attention",
    "Block",
    "FfnKind",
    "GeluMlp",
    "HeadsFirstMemoryKV",
    "KVCache",
    "LayerNorm",
    "LearnedPositions",
    "MemoryKV",
    "NormKind",
    "RMSNorm",
    "SwiGlu",
    "TokenEmbedding",
    "apply_rope",
    "attention_mask",
    "cached_attention",
    "call_block",
    "dropout",
    "heads_first_attention",
    "kernel_init",
    "make_block",
    "make_ffn",
    "make_norm",
    "param",
    "partitioned",
    "residual_scale",
    "sinusoidal_positions",
    "split_rng",
]

"""Config sections shared by the concept models (the ``model:`` YAML section nests them)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """A stack of pre-norm Transformer blocks (RMSNorm, RoPE attention, SwiGLU).

    Attributes:
        num_layers: Number of blocks.
        num_heads: Attention heads (``d_model`` must be divisible by it).
        mlp_dim: SwiGLU hidden width.
        dropout: Residual dropout rate during training.
        remat: Rematerialize each block in the backward pass (less activation memory for
            one more forward pass; results unchanged).
    """

    num_layers: int = 4
    num_heads: int = 4
    mlp_dim: int = 1024
    dropout: float = 0.0
    remat: bool = False

    def __post_init__(self) -> None:
        if self.num_layers < 1 or self.num_heads < 1 or self.mlp_dim < 1:
            raise ValueError("num_layers, num_heads and mlp_dim must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

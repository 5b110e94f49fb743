"""Base-LCM (paper section 2.2): regress the next concept with mean squared error.

``PreNet`` (linear ``D -> d_model``) -> causal Transformer (pre-norm RMSNorm, RoPE, SwiGLU)
-> ``PostNet`` (linear ``d_model -> D``). The output at position ``t`` is the prediction of
the normalized concept ``t + 1``; the loss is the MSE to it over positions whose next concept
belongs to the same document piece.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from lcm.models.common import causal_segment_mask, regression_loss, target_mask
from lcm.models.config import TransformerConfig
from lcm.models.family import concept_task
from lcm.models.layers import causal_transformer, postnet, prenet
from lcm.models.protocols import Batch, SamplingOptions
from lcm.nn.attention import KVCache


@dataclasses.dataclass(frozen=True)
class BaseLCMConfig:
    """Model section of the ``base_lcm`` task.

    Attributes:
        d_model: Transformer width.
        rope_base: RoPE base.
        decoder: The causal Transformer.
    """

    d_model: int = 256
    rope_base: float = 10000.0
    decoder: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)


class BaseLCMState(NamedTuple):
    """Generation state: KV caches, the last output and the context length.

    Attributes:
        caches: One KV cache per block.
        last: [B, D] the prediction after the last context concept.
        length: Slots filled, padding included (scalar int32).
        first: [B] int32, the first real slot of each left-padded row.
    """

    caches: list[KVCache]
    last: jax.Array
    length: jax.Array
    first: jax.Array


def next_concept_targets(batch: Batch) -> tuple[jax.Array, jax.Array]:
    """Targets of next-concept prediction: ``(concepts[t + 1] [B, T, D], valid [B, T])``.

    Position ``t`` has a target when concept ``t + 1`` exists in the same document piece and
    is a loss target (see :func:`~lcm.models.common.target_mask`).
    """
    seg = batch["segment_ids"]
    nxt = jnp.concatenate([seg[:, 1:], jnp.zeros_like(seg[:, :1])], axis=1)
    wanted = target_mask(batch)
    wanted_next = jnp.concatenate([wanted[:, 1:], jnp.zeros_like(wanted[:, :1])], axis=1)
    valid = (seg > 0) & (nxt == seg) & wanted_next
    concepts = batch["concepts"]
    targets = jnp.concatenate([concepts[:, 1:], jnp.zeros_like(concepts[:, :1])], axis=1)
    return targets, valid


class BaseLCM(nnx.Module):
    """The MSE next-concept model.

    Args:
        cfg: Model config.
        concept_dim: D, the concept size (from the data).
        rngs: Initialization RNGs.
    """

    def __init__(self, cfg: BaseLCMConfig, concept_dim: int, rngs: nnx.Rngs):
        self.concept_dim = concept_dim
        self.prenet = prenet(concept_dim, cfg.d_model, rngs)
        self.decoder = causal_transformer(cfg.d_model, cfg.decoder, cfg.rope_base, rngs)
        self.postnet = postnet(cfg.d_model, concept_dim, rngs)

    def __call__(self, batch: Batch, rng: jax.Array | None = None) -> jax.Array:
        """Prediction of concept ``t + 1`` at every position: [B, T, D]."""
        mask = causal_segment_mask(batch["segment_ids"])
        h = self.decoder(self.prenet(batch["concepts"]), mask, batch["positions"], rng)
        return self.postnet(h)

    def loss(self, batch: Batch, rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """MSE (mean over D) to the next normalized concept, over valid positions."""
        targets, valid = next_concept_targets(batch)
        return regression_loss(self(batch, rng) - targets, valid)

    def predict_next(self, batch: Batch, rng: jax.Array, options: SamplingOptions) -> jax.Array:
        """The deterministic next-concept prediction at every position: [B, T, D]."""
        del rng, options  # a regression model has nothing to sample
        return self(batch)

    def start(
        self, prompt: jax.Array, max_len: int, first: jax.Array | None = None
    ) -> BaseLCMState:
        """Encode ``prompt`` [B, P, D] into KV caches sized for ``max_len`` concepts.

        ``first`` [B]: rows are left-padded, row ``b``'s prompt starts at slot ``first[b]``.
        """
        first = jnp.zeros(prompt.shape[0], jnp.int32) if first is None else first
        caches = self.decoder.init_cache(prompt.shape[0], max_len)
        h, caches = self.decoder.decode(
            self.prenet(prompt), caches, jnp.int32(0), first, last_only=True
        )
        return BaseLCMState(caches, self.postnet(h[:, -1]), jnp.int32(prompt.shape[1]), first)

    def next_concept(
        self, state: BaseLCMState, rng: jax.Array, options: SamplingOptions
    ) -> jax.Array:
        """The prediction after the context: [B, D]."""
        del rng, options
        return state.last

    def extend(self, state: BaseLCMState, concept: jax.Array) -> BaseLCMState:
        """Append ``concept`` [B, D] to the context."""
        h, caches = self.decoder.decode(
            self.prenet(concept[:, None]), state.caches, state.length, state.first
        )
        return BaseLCMState(caches, self.postnet(h[:, 0]), state.length + 1, state.first)


TASK = concept_task("base_lcm", BaseLCMConfig, BaseLCM)

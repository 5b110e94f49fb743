"""One-Tower diffusion LCM (paper section 2.3.3).

One causal Transformer reads the clean concepts *and* a noisy copy of each concept. A clean
concept attends causally to the clean concepts of its document; the noisy copy of concept
``t`` attends to the clean concepts ``< t`` and to itself, never to another noisy concept, and
its output is the estimate of the clean concept ``t`` (x0-prediction). The paper interleaves
the two streams; here they are concatenated (``[clean_0..T-1, noisy_0..T-1]``) with the same
mask and the same RoPE positions (``t`` for both copies of concept ``t``), which attention
cannot tell apart from the interleaved order.

The diffusion timestep is embedded and added to each input after the PreNet (equivalent to
concatenating it to the input vector before a linear PreNet); clean concepts carry the
embedding of timestep -1 ("no noise"). With probability ``cfg_drop_prob`` a noisy concept sees
no clean context (classifier-free-guidance training). Generation keeps the clean concepts in a
KV cache; a noisy query is run at the next slot without being stored.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from lcm.models.common import (
    causal_segment_mask,
    drop_mask,
    earlier_in_segment,
    masked_mean,
    position_keys,
    regression_loss,
    target_mask,
)
from lcm.models.config import TransformerConfig
from lcm.models.diffusion.ddim import DDIMSampler
from lcm.models.diffusion.schedules import ScheduleConfig, add_noise, discretize
from lcm.models.family import concept_task
from lcm.models.layers import causal_transformer, postnet, prenet
from lcm.models.protocols import Batch, SamplingOptions
from lcm.nn.attention import KVCache
from lcm.nn.timestep import TimestepEmbedding

CLEAN_TIMESTEP = -1  # the timestep embedded for clean (un-noised) concepts


@dataclasses.dataclass(frozen=True)
class OneTowerConfig:
    """Model section of the ``one_tower`` task.

    Attributes:
        d_model: Transformer width.
        rope_base: RoPE base.
        decoder: The Transformer.
        schedule: Training noise schedule.
        cfg_drop_prob: Probability that a noisy concept is denoised without context.
    """

    d_model: int = 256
    rope_base: float = 10000.0
    decoder: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    cfg_drop_prob: float = 0.15

    def __post_init__(self) -> None:
        if not 0.0 <= self.cfg_drop_prob < 1.0:
            raise ValueError(f"cfg_drop_prob must be in [0, 1), got {self.cfg_drop_prob}")


class OneTowerState(NamedTuple):
    """Generation state.

    Attributes:
        caches: KV caches of the clean context.
        length: Slots filled, padding included (scalar int32).
        first: [B] int32, the first real slot of each left-padded row.
    """

    caches: list[KVCache]
    length: jax.Array
    first: jax.Array


def one_tower_mask(
    segment_ids: jax.Array,
    positions: jax.Array,
    noisy_positions: jax.Array,
    dropped: jax.Array,
) -> jax.Array:
    """Attention mask over ``[clean (T), noisy (T)]``: [B, 2T, 2T] bool.

    Args:
        segment_ids: [B, T] document piece of each concept (0 = padding).
        positions: [B, T] positions of the clean concepts.
        noisy_positions: [B, T] position of the concept each noisy query estimates.
        dropped: [B, T] noisy queries that see no clean context.
    """
    b, t = segment_ids.shape
    clean_to_clean = causal_segment_mask(segment_ids)
    noisy_to_clean = earlier_in_segment(segment_ids, noisy_positions, segment_ids, positions)
    noisy_to_clean &= ~dropped[:, :, None]
    noisy_to_noisy = jnp.broadcast_to(jnp.eye(t, dtype=bool), (b, t, t))
    top = jnp.concatenate([clean_to_clean, jnp.zeros((b, t, t), bool)], axis=2)
    bottom = jnp.concatenate([noisy_to_clean, noisy_to_noisy], axis=2)
    return jnp.concatenate([top, bottom], axis=1)


class OneTowerLCM(nnx.Module):
    """One causal Transformer over clean and noisy concepts.

    Args:
        cfg: Model config.
        concept_dim: D (from the data).
        rngs: Initialization RNGs.
    """

    def __init__(self, cfg: OneTowerConfig, concept_dim: int, rngs: nnx.Rngs):
        self.concept_dim = concept_dim
        self.schedule_cfg = cfg.schedule
        self.cfg_drop_prob = cfg.cfg_drop_prob
        self.prenet = prenet(concept_dim, cfg.d_model, rngs)
        self.time = TimestepEmbedding(cfg.d_model, rngs=rngs)
        self.decoder = causal_transformer(cfg.d_model, cfg.decoder, cfg.rope_base, rngs)
        self.postnet = postnet(cfg.d_model, concept_dim, rngs)

    def _embed(self, x: jax.Array, t: jax.Array | int) -> jax.Array:
        """Input embedding of concepts ``x`` [..., D] at timesteps ``t`` [...] or scalar."""
        return self.prenet(x) + self.time(jnp.broadcast_to(t, x.shape[:-1]))

    def _denoise(
        self,
        batch: Batch,
        x_t: jax.Array,
        t: jax.Array,
        noisy_positions: jax.Array,
        dropped: jax.Array,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        """Clean estimates of the noisy concepts ``x_t`` [B, T, D]: [B, T, D]."""
        seg, pos = batch["segment_ids"], batch["positions"]
        n = seg.shape[1]
        clean = self._embed(batch["concepts"], CLEAN_TIMESTEP)
        inputs = jnp.concatenate([clean, self._embed(x_t, t)], axis=1)
        mask = one_tower_mask(seg, pos, noisy_positions, dropped)
        h = self.decoder(inputs, mask, jnp.concatenate([pos, noisy_positions], axis=1), rng)
        return self.postnet(h[:, n:])

    def loss(self, batch: Batch, rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """MSE (mean over D) of the x0-estimate of each concept, given the earlier ones."""
        r_t, r_noise, r_drop, r_model = jax.random.split(rng, 4)
        x0, seg = batch["concepts"], batch["segment_ids"]
        schedule = discretize(self.schedule_cfg)
        t = jax.random.randint(r_t, seg.shape, 0, schedule.num_steps)
        x_t = add_noise(x0, jax.random.normal(r_noise, x0.shape), t, schedule)
        dropped = drop_mask(r_drop, seg.shape, self.cfg_drop_prob)
        err = self._denoise(batch, x_t, t, batch["positions"], dropped, r_model) - x0
        loss, metrics = regression_loss(err, target_mask(batch))
        return loss, {**metrics, "cfg_dropped": masked_mean(dropped, batch["mask"])}

    def _sampler(self, options: SamplingOptions) -> DDIMSampler:
        return DDIMSampler(discretize(self.schedule_cfg), options.ddim, prediction="x0")

    def predict_next(self, batch: Batch, rng: jax.Array, options: SamplingOptions) -> jax.Array:
        """Sample concept ``t + 1`` at every position ``t`` in parallel: [B, T, D]."""
        nxt = batch["positions"] + 1
        with_context = jnp.zeros(nxt.shape, bool)
        return self._sampler(options)(
            lambda x, t: self._denoise(batch, x, t, nxt, with_context),
            lambda x, t: self._denoise(batch, x, t, nxt, ~with_context),
            position_keys(rng, nxt),
            self.concept_dim,
        )

    def start(
        self, prompt: jax.Array, max_len: int, first: jax.Array | None = None
    ) -> OneTowerState:
        """Encode ``prompt`` [B, P, D] with KV caches sized for ``max_len`` concepts.

        ``first`` [B]: rows are left-padded, row ``b``'s prompt starts at slot ``first[b]``.
        """
        first = jnp.zeros(prompt.shape[0], jnp.int32) if first is None else first
        caches = self.decoder.init_cache(prompt.shape[0], max_len)
        clean = self._embed(prompt, CLEAN_TIMESTEP)
        caches = self.decoder.fill_cache(clean, caches, jnp.int32(0), first)
        return OneTowerState(caches, jnp.int32(prompt.shape[1]), first)

    def next_concept(
        self, state: OneTowerState, rng: jax.Array, options: SamplingOptions
    ) -> jax.Array:
        """Sample the concept after the context: [B, D]."""
        b = state.caches[0].key.shape[0]
        position = state.length - state.first  # [B], in each row's own document
        here = position[:, None]

        def cond(x: jax.Array, t: jax.Array) -> jax.Array:
            # The noisy query takes the next slot of a throw-away copy of the caches.
            h, _ = self.decoder.decode(
                self._embed(x[:, None], t), state.caches, state.length, state.first
            )
            return self.postnet(h[:, 0])

        def uncond(x: jax.Array, t: jax.Array) -> jax.Array:
            alone = jnp.ones((b, 1, 1), bool)
            return self.postnet(self.decoder(self._embed(x[:, None], t), alone, here)[:, 0])

        keys = position_keys(rng, position)
        return self._sampler(options)(cond, uncond, keys, self.concept_dim)

    def extend(self, state: OneTowerState, concept: jax.Array) -> OneTowerState:
        """Append the clean ``concept`` [B, D] to the context."""
        caches = self.decoder.fill_cache(
            self._embed(concept[:, None], CLEAN_TIMESTEP), state.caches, state.length, state.first
        )
        return OneTowerState(caches, state.length + 1, state.first)


TASK = concept_task("one_tower", OneTowerConfig, OneTowerLCM)

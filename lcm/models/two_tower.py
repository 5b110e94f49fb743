"""Two-Tower diffusion LCM (paper section 2.3.4).

A causal *contextualizer* (PreNet ``D -> d_model`` then a causal Transformer) encodes the clean
concepts; a *denoiser* (:mod:`lcm.models.diffusion.denoiser`) turns a noisy concept ``x_t`` into
an estimate of the clean one (x0-prediction), cross-attending to the contextualizer outputs of
the *earlier* concepts only (the shifted causal mask) plus a zero vector. The timestep enters
through zero-initialized AdaLN. In training every position ``t`` of a document is denoised at
once (concept ``t`` noised at a random step, conditioned on concepts ``< t``), and with
probability ``cfg_drop_prob`` a position loses its context (it sees only the zero vector), which
trains the unconditional model used by classifier-free guidance.
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
from lcm.models.diffusion.denoiser import Denoiser
from lcm.models.diffusion.schedules import ScheduleConfig, add_noise, discretize
from lcm.models.family import concept_task
from lcm.models.layers import causal_transformer, prenet
from lcm.models.protocols import Batch, SamplingOptions
from lcm.nn.attention import KVCache


@dataclasses.dataclass(frozen=True)
class TwoTowerConfig:
    """Model section of the ``two_tower`` task.

    Attributes:
        d_model: Width of both towers.
        rope_base: RoPE base of the contextualizer.
        context: The causal contextualizer.
        denoiser: The denoiser stack.
        schedule: Training noise schedule.
        cfg_drop_prob: Probability that a position is denoised without context.
    """

    d_model: int = 256
    rope_base: float = 10000.0
    context: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)
    denoiser: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    cfg_drop_prob: float = 0.15

    def __post_init__(self) -> None:
        if not 0.0 <= self.cfg_drop_prob < 1.0:
            raise ValueError(f"cfg_drop_prob must be in [0, 1), got {self.cfg_drop_prob}")


class TwoTowerState(NamedTuple):
    """Generation state.

    Attributes:
        caches: Contextualizer KV caches.
        context: [B, max_len, d_model] contextualizer outputs (slots ``>= length`` unused).
        length: Slots filled, padding included (scalar int32).
        first: [B] int32, the first real slot of each left-padded row.
    """

    caches: list[KVCache]
    context: jax.Array
    length: jax.Array
    first: jax.Array


class TwoTowerLCM(nnx.Module):
    """Contextualizer + denoiser.

    Args:
        cfg: Model config.
        concept_dim: D (from the data).
        rngs: Initialization RNGs.
    """

    def __init__(self, cfg: TwoTowerConfig, concept_dim: int, rngs: nnx.Rngs):
        self.concept_dim = concept_dim
        self.schedule_cfg = cfg.schedule
        self.cfg_drop_prob = cfg.cfg_drop_prob
        self.prenet = prenet(concept_dim, cfg.d_model, rngs)
        self.contextualizer = causal_transformer(cfg.d_model, cfg.context, cfg.rope_base, rngs)
        self.denoiser = Denoiser(concept_dim, cfg.d_model, cfg.denoiser, rngs)

    def encode(self, batch: Batch, rng: jax.Array | None = None) -> jax.Array:
        """Contextualizer outputs of the clean concepts: [B, T, d_model]."""
        mask = causal_segment_mask(batch["segment_ids"])
        return self.contextualizer(self.prenet(batch["concepts"]), mask, batch["positions"], rng)

    def loss(self, batch: Batch, rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """MSE (mean over D) of the x0-estimate of each concept, given the earlier ones."""
        r_ctx, r_t, r_noise, r_drop, r_den = jax.random.split(rng, 5)
        x0, seg, pos = batch["concepts"], batch["segment_ids"], batch["positions"]
        schedule = discretize(self.schedule_cfg)
        t = jax.random.randint(r_t, seg.shape, 0, schedule.num_steps)
        x_t = add_noise(x0, jax.random.normal(r_noise, x0.shape), t, schedule)
        dropped = drop_mask(r_drop, seg.shape, self.cfg_drop_prob)
        visible = earlier_in_segment(seg, pos, seg, pos) & ~dropped[:, :, None]
        memories = self.denoiser.project_context(self.encode(batch, r_ctx))
        err = self.denoiser(x_t, t, memories, visible, r_den) - x0
        loss, metrics = regression_loss(err, target_mask(batch))
        return loss, {**metrics, "cfg_dropped": masked_mean(dropped, batch["mask"])}

    def _sampler(self, options: SamplingOptions) -> DDIMSampler:
        return DDIMSampler(discretize(self.schedule_cfg), options.ddim, prediction="x0")

    def predict_next(self, batch: Batch, rng: jax.Array, options: SamplingOptions) -> jax.Array:
        """Sample concept ``t + 1`` at every position ``t`` in parallel: [B, T, D]."""
        seg, pos = batch["segment_ids"], batch["positions"]
        memories = self.denoiser.project_context(self.encode(batch))
        visible = earlier_in_segment(seg, pos + 1, seg, pos)
        blind = jnp.zeros_like(visible)
        return self._sampler(options)(
            lambda x, t: self.denoiser(x, t, memories, visible),
            lambda x, t: self.denoiser(x, t, memories, blind),
            position_keys(rng, pos + 1),
            self.concept_dim,
        )

    def start(
        self, prompt: jax.Array, max_len: int, first: jax.Array | None = None
    ) -> TwoTowerState:
        """Encode ``prompt`` [B, P, D] with KV caches sized for ``max_len`` concepts.

        ``first`` [B]: rows are left-padded, row ``b``'s prompt starts at slot ``first[b]``.
        """
        b, p, _ = prompt.shape
        first = jnp.zeros(b, jnp.int32) if first is None else first
        caches = self.contextualizer.init_cache(b, max_len)
        h, caches = self.contextualizer.decode(self.prenet(prompt), caches, jnp.int32(0), first)
        context = jnp.zeros((b, max_len, h.shape[-1]), h.dtype).at[:, :p].set(h)
        return TwoTowerState(caches, context, jnp.int32(p), first)

    def next_concept(
        self, state: TwoTowerState, rng: jax.Array, options: SamplingOptions
    ) -> jax.Array:
        """Sample the concept after the context: [B, D]."""
        b, max_len, _ = state.context.shape
        # Reused by every DDIM step: stored heads-first once, not transposed at each step.
        memories = [m.heads_first() for m in self.denoiser.project_context(state.context)]
        slots = jnp.arange(max_len)[None, :]
        visible = ((slots < state.length) & (slots >= state.first[:, None]))[:, None, :]
        blind = jnp.zeros_like(visible)
        return self._sampler(options)(
            lambda x, t: self.denoiser(x[:, None], t, memories, visible)[:, 0],
            lambda x, t: self.denoiser(x[:, None], t, memories, blind)[:, 0],
            position_keys(rng, state.length - state.first),
            self.concept_dim,
        )

    def extend(self, state: TwoTowerState, concept: jax.Array) -> TwoTowerState:
        """Append ``concept`` [B, D] to the context."""
        h, caches = self.contextualizer.decode(
            self.prenet(concept[:, None]), state.caches, state.length, state.first
        )
        context = jax.lax.dynamic_update_slice(state.context, h, (0, state.length, 0))
        return TwoTowerState(caches, context, state.length + 1, state.first)


TASK = concept_task("two_tower", TwoTowerConfig, TwoTowerLCM)

"""Optimizer: AdamW, linear warmup then cosine/linear/constant decay, global-norm clipping."""

from __future__ import annotations

from typing import Any

import jax
import optax

from trainers.config import OptimConfig


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Learning rate as a function of the step: warmup to ``lr``, then decay over the rest."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    end_lr = cfg.lr * cfg.end_lr_ratio
    decay_steps = max(total_steps - warmup, 1)
    if cfg.decay == "cosine":
        decay = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.end_lr_ratio)
    elif cfg.decay == "linear":
        decay = optax.linear_schedule(cfg.lr, end_lr, decay_steps)
    elif cfg.decay == "wsd":
        stable = max(decay_steps - cfg.cooldown_steps, 0)
        decay = optax.linear_schedule(cfg.lr, end_lr, decay_steps - stable, transition_begin=stable)
    else:
        decay = optax.constant_schedule(cfg.lr)
    if warmup == 0:
        return decay
    ramp = optax.linear_schedule(0.0, cfg.lr, warmup)
    return optax.join_schedules([ramp, decay], [warmup])


def _weight_decay_mask(params: Any) -> Any:
    """Decay matrices only: biases and norm scales (ndim <= 1) are left alone."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """Clip by global norm (if enabled), then AdamW with the schedule above."""
    adamw = optax.adamw(
        learning_rate_schedule(cfg, total_steps),
        b1=cfg.b1,
        b2=cfg.b2,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        mask=_weight_decay_mask,
    )
    if cfg.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw)
    return adamw

"""Optimizer: AdamW, linear warmup then cosine/linear/constant decay, global-norm clipping,
optionally with some parameters frozen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from lcm.nn.weights import variable_name
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


def _weight_decay_mask(frozen: tuple[str, ...]) -> Callable[[Any], Any]:
    """Decay matrices only (biases and norm scales, ndim <= 1, are left alone), never frozen
    parameters."""

    def mask(params: Any) -> Any:
        decay = jax.tree.map(lambda p: p.ndim > 1, params)
        if not frozen:
            return decay
        labels = frozen_labels(params, frozen)
        return jax.tree.map(lambda d, label: d and label == "train", decay, labels)

    return mask


def frozen_labels(params: Any, frozen: tuple[str, ...]) -> Any:
    """``"frozen"`` or ``"train"`` for each parameter: frozen when its path starts with one of
    the ``frozen`` prefixes (whole segments: "encoder" does not match "encoder2/...").

    Raises:
        ValueError: A prefix matches no parameter (a typo would otherwise train everything).
    """
    prefixes = [p.strip("/") for p in frozen]
    used: set[str] = set()

    def label(path: tuple[Any, ...], _: Any) -> str:
        name = variable_name(path)
        hits = [p for p in prefixes if name == p or name.startswith(p + "/")]
        used.update(hits)
        return "frozen" if hits else "train"

    labels = jax.tree_util.tree_map_with_path(label, params)
    if unused := [p for p in prefixes if p not in used]:
        some = sorted(
            {variable_name(path) for path, _ in jax.tree_util.tree_leaves_with_path(params)}
        )
        raise ValueError(
            f"optim.frozen: {unused} match no parameter (parameters look like {some[:3]} ...)"
        )
    if "train" not in jax.tree.leaves(labels):
        raise ValueError(f"optim.frozen={list(frozen)} freezes every parameter")
    return labels


def stop_frozen_gradients(params: Any, frozen: tuple[str, ...]) -> Any:
    """``params`` with ``jax.lax.stop_gradient`` on the frozen ones, so that the backward pass
    skips them (and any layers that only they feed, such as a frozen encoder)."""
    if not frozen:
        return params
    labels = frozen_labels(params, frozen)
    return jax.tree.map(
        lambda p, label: jax.lax.stop_gradient(p) if label == "frozen" else p, params, labels
    )


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """Clip by global norm (if enabled), then AdamW with the schedule above.

    Frozen parameters (``cfg.frozen``) reach it with zero gradients (the train step applies
    :func:`stop_frozen_gradients`): Adam's moments of a zero gradient stay zero, so with weight
    decay masked off their update is exactly zero and they keep their values bit for bit.
    """
    adamw = optax.adamw(
        learning_rate_schedule(cfg, total_steps),
        b1=cfg.b1,
        b2=cfg.b2,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        mask=_weight_decay_mask(cfg.frozen),
    )
    if cfg.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw)
    return adamw

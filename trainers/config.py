"""The training config: the task's own model/data sections plus the trainer's sections."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from typing import Any, Literal

from lcm.config import ConfigError, apply_overrides, from_dict, read_yaml
from trainers.tasks import get_task


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup, then decay, and global-norm gradient clipping."""

    lr: float = 1e-3
    warmup_steps: int = 100
    decay: Literal["cosine", "linear", "constant", "wsd"] = "cosine"
    end_lr_ratio: float = 0.1  # final lr = lr * end_lr_ratio
    # "wsd" (warmup-stable-decay): constant lr, then a linear cooldown over the last
    # cooldown_steps steps. Raising `steps` of a run still in its stable phase extends it
    # without changing any step already taken.
    cooldown_steps: int = 0
    weight_decay: float = 0.01
    clip_norm: float = 1.0  # 0 disables clipping
    b1: float = 0.9
    b2: float = 0.98
    eps: float = 1e-8
    # Parameters kept fixed: path prefixes such as "encoder" or "decoder/embed" (segments of
    # the parameter tree joined by "/"). Their gradients are stopped (the backward pass skips
    # layers only they feed), so they get no update, no weight decay and no share of the norm.
    frozen: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.cooldown_steps < 0:
            raise ValueError(f"optim.cooldown_steps must be >= 0, got {self.cooldown_steps}")
        for prefix in self.frozen:
            if not prefix.strip("/"):
                raise ValueError("optim.frozen holds an empty parameter path")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Orbax checkpoints under ``<run_dir>/checkpoints``: every N steps and at the end."""

    every: int = 1000
    keep: int = 3
    async_save: bool = True


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh ``('data', 'fsdp', 'model')``; one axis may be -1 (all remaining devices)."""

    data: int = -1
    fsdp: int = 1
    model: int = 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A whole training run. ``model`` and ``data`` are the family's own config dataclasses.

    ``family`` names the model family: a registry name (``trainers.tasks.TASKS``) or the
    import path of its :class:`~trainers.task.Task` (``"module:attribute"``).
    """

    family: str
    model: Any = None
    data: Any = None
    seed: int = 0
    steps: int = 1000
    batch_size: int = 32
    log_every: int = 50
    run_dir: str = "runs/default"
    grad_accum: int = 1  # micro-batches per step (batch_size is the total over them)
    compute_dtype: Literal["float32", "bfloat16"] = "float32"  # params/optimizer stay float32
    # Start a fresh run from trained weights (fine-tuning, or continuing a model whose
    # optimizer state was not kept): a model directory, its weights.npz, or a run directory
    # (newest checkpoint). The optimizer starts fresh; a resumed run ignores this.
    init_from: str | None = None
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "grad_accum"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}"
            )


def train_config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Validate a raw mapping against the trainer's schema and the task's model/data schema."""
    typed = dict(raw)
    if "task" in typed:  # the key's name before 2026-12 (runs and configs still carry it)
        if "family" in typed:
            raise ConfigError("config keys 'family' and 'task' both given; keep 'family'")
        warnings.warn(
            "config key 'task' is deprecated: name the model family with 'family'",
            DeprecationWarning,
            stacklevel=2,
        )
        typed["family"] = typed.pop("task")
    if "family" not in typed:
        raise ConfigError("missing required config key 'family' (the model family)")
    if not isinstance(typed["family"], str):
        raise ConfigError(f"config key 'family': expected str, got {typed['family']!r}")
    task = get_task(typed["family"])
    typed["model"] = from_dict(task.model_config, raw.get("model") or {}, prefix="model.")
    typed["data"] = from_dict(task.data_config, raw.get("data") or {}, prefix="data.")
    return from_dict(TrainConfig, typed)


def load_train_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Load a training config from YAML plus dotted ``key=value`` overrides."""
    raw = read_yaml(path) if path is not None else {}
    return train_config_from_dict(apply_overrides(raw, overrides))

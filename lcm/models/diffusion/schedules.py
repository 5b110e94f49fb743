"""Noise schedules of the diffusion LCMs and the forward (noising) process.

A schedule is a continuous ``alpha_bar(t)`` on ``t in [0, 1]`` (the fraction of signal power
left at time ``t``); it is discretized into ``num_steps`` betas as in Nichol & Dhariwal (2021):
``beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), max_beta)``, and
``alphas_cumprod[i] = prod_{j <= i} (1 - beta_j)``. Two schedules, as in the LCM paper:

- cosine (diffusers' ``squaredcos_cap_v2``): ``alpha_bar(t) = cos((t + s) / (1 + s) * pi/2)^2``;
- sigmoid (LCM paper, eq. 14): ``alpha_bar(t) = sigmoid(beta - alpha * logit(t))``.

Zero-terminal-SNR rescaling (Lin et al. 2024, algorithm 1) shifts and scales
``sqrt(alphas_cumprod)`` so that the last step is pure noise while the first is unchanged,
so training sees the same input distribution that sampling starts from.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal, Protocol

import jax
import jax.numpy as jnp
import numpy as np


class NoiseSchedule(Protocol):
    """A continuous schedule ``alpha_bar(t)``, decreasing from ~1 at t=0 to ~0 at t=1."""

    def alpha_bar(self, t: np.ndarray) -> np.ndarray:
        """Signal power left at times ``t`` (float64 array in [0, 1])."""
        ...


@dataclasses.dataclass(frozen=True)
class CosineSchedule:
    """``cos((t + s) / (1 + s) * pi / 2)^2`` (``squaredcos_cap_v2`` with offset ``s``)."""

    s: float = 0.008

    def alpha_bar(self, t: np.ndarray) -> np.ndarray:
        """See the class docstring."""
        return np.cos((np.asarray(t, np.float64) + self.s) / (1 + self.s) * math.pi / 2) ** 2


@dataclasses.dataclass(frozen=True)
class SigmoidSchedule:
    """``sigmoid(beta - alpha * logit(t))``; ``alpha`` sets the steepness, ``beta`` the shift."""

    alpha: float = 1.5
    beta: float = 0.0

    def alpha_bar(self, t: np.ndarray) -> np.ndarray:
        """See the class docstring (``t`` is clipped away from 0 and 1 before the logit)."""
        t = np.clip(np.asarray(t, np.float64), 1e-12, 1 - 1e-12)
        z = self.beta - self.alpha * np.log(t / (1 - t))
        return 1.0 / (1.0 + np.exp(-z))


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """The discrete noise schedule of a diffusion LCM.

    Attributes:
        kind: "cosine" or "sigmoid".
        num_steps: Number of training diffusion steps T (the paper uses 100).
        zero_terminal_snr: Rescale so that ``alphas_cumprod[T-1] = 0``.
        sigmoid_alpha: Steepness of the sigmoid schedule.
        sigmoid_beta: Shift of the sigmoid schedule.
        max_beta: Cap on each beta (keeps the unrescaled last step finite).
    """

    kind: Literal["cosine", "sigmoid"] = "cosine"
    num_steps: int = 100
    zero_terminal_snr: bool = True
    sigmoid_alpha: float = 1.5
    sigmoid_beta: float = 0.0
    max_beta: float = 0.999

    def __post_init__(self) -> None:
        if self.num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {self.num_steps}")

    def schedule(self) -> NoiseSchedule:
        """The continuous schedule named by ``kind``."""
        if self.kind == "cosine":
            return CosineSchedule()
        return SigmoidSchedule(self.sigmoid_alpha, self.sigmoid_beta)


def betas_for_alpha_bar(
    schedule: NoiseSchedule, num_steps: int, max_beta: float = 0.999
) -> np.ndarray:
    """Discretize ``schedule`` into ``num_steps`` betas, float64 ``[num_steps]``."""
    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    ab = schedule.alpha_bar(t)
    return np.minimum(1.0 - ab[1:] / ab[:-1], max_beta)


def rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Rescale ``betas`` so the last step has zero SNR and the first is unchanged."""
    sqrt_ab = np.sqrt(np.cumprod(1.0 - np.asarray(betas, np.float64)))
    first, last = sqrt_ab[0], sqrt_ab[-1]
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    ab = sqrt_ab**2
    alphas = np.concatenate([ab[:1], ab[1:] / ab[:-1]])
    return 1.0 - alphas


@dataclasses.dataclass(frozen=True, eq=False)
class DiscreteSchedule:
    """A discretized schedule.

    Attributes:
        betas: float64 [T].
        alphas_cumprod: float64 [T], ``alpha_bar`` after each step.
    """

    betas: np.ndarray
    alphas_cumprod: np.ndarray

    @property
    def num_steps(self) -> int:
        """T, the number of training diffusion steps."""
        return int(self.betas.shape[0])

    def snr(self) -> np.ndarray:
        """Signal-to-noise ratio ``alpha_bar / (1 - alpha_bar)`` per step, float64 [T]."""
        ab = self.alphas_cumprod
        return ab / np.maximum(1.0 - ab, 1e-300)


@functools.lru_cache(maxsize=32)
def discretize(cfg: ScheduleConfig) -> DiscreteSchedule:
    """The discrete schedule of ``cfg`` (cached: configs are frozen and hashable)."""
    betas = betas_for_alpha_bar(cfg.schedule(), cfg.num_steps, cfg.max_beta)
    if cfg.zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    return DiscreteSchedule(betas=betas, alphas_cumprod=np.cumprod(1.0 - betas))


def add_noise(
    x0: jax.Array, noise: jax.Array, t: jax.Array, schedule: DiscreteSchedule
) -> jax.Array:
    """Sample ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise`` (forward process).

    Args:
        x0: Clean vectors [..., D].
        noise: Standard normal noise [..., D].
        t: Integer timesteps [...] in ``[0, T)``.
        schedule: The discrete schedule.

    Returns:
        ``x_t`` [..., D].
    """
    ab = jnp.asarray(schedule.alphas_cumprod, jnp.float32)[t][..., None]
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise

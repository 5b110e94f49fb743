"""The DDIM sampler (Song et al. 2021) with the options used by the diffusion LCMs.

Small closed-form pieces, each testable on its own:

- :func:`trailing_timesteps`: the "trailing" spacing of Lin et al. (2024, table 2), which
  always starts at the last training step (pure noise under a zero-terminal-SNR schedule);
- conversions between the three parametrizations of the model output (x0, epsilon, v);
- :func:`classifier_free_guidance` with guidance rescale (Lin et al. 2024, algorithm 2);
- :func:`ddim_step`, one deterministic (eta = 0) or stochastic (eta > 0) update.

:class:`DDIMSampler` strings them together for any model given as a :class:`DenoiseFn`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from lcm.models.common import normal_from_keys
from lcm.models.diffusion.schedules import DiscreteSchedule

Prediction = Literal["x0", "epsilon", "v"]


@dataclasses.dataclass(frozen=True)
class DDIMConfig:
    """Sampling options of a diffusion LCM.

    Attributes:
        steps: Number of denoising steps S (at most the training steps T).
        eta: 0 for deterministic DDIM, 1 for DDPM-like stochastic steps.
        guidance_scale: Classifier-free guidance weight ``w`` (1 = no guidance).
        guidance_rescale: Mix-in factor of the std-rescaled guided prediction (0 = off).
        initial_noise_scale: Standard deviation of the starting noise.
        epsilon_scaling: Divide the predicted noise by this factor (Ning et al. 2023);
            1 = off.
        clip_noise: Clip the latents to ``[-clip_noise, clip_noise]`` after each step.
    """

    # The inference settings the LCM paper uses for its diffusion LCMs, and the only defaults
    # of these knobs: GenerationConfig and every command line read them from here.
    steps: int = 40
    eta: float = 0.0
    guidance_scale: float = 3.0
    guidance_rescale: float = 0.7
    initial_noise_scale: float = 0.6
    epsilon_scaling: float = 1.00045
    clip_noise: float = 100.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.epsilon_scaling <= 0:
            raise ValueError(f"epsilon_scaling must be > 0, got {self.epsilon_scaling}")


class DenoiseFn(Protocol):
    """A model output at one diffusion timestep."""

    def __call__(self, x_t: jax.Array, t: jax.Array) -> jax.Array:
        """Prediction (in the model's parametrization) for noisy ``x_t`` [..., D] at step ``t``."""
        ...


class Sampler(Protocol):
    """Draws clean vectors from a (conditional, unconditional) denoiser pair."""

    def __call__(
        self, cond: DenoiseFn, uncond: DenoiseFn | None, keys: jax.Array, dim: int
    ) -> jax.Array:
        """One sample ``[*keys.shape, dim]`` per key."""
        ...


def trailing_timesteps(num_train_steps: int, num_steps: int) -> np.ndarray:
    """``round(arange(T, 0, -T/S)) - 1``: S descending timesteps starting at ``T - 1``."""
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"need 1 <= steps <= {num_train_steps}, got {num_steps}")
    ratio = num_train_steps / num_steps
    return np.round(np.arange(num_train_steps, 0, -ratio)).astype(np.int32) - 1


def x0_from_epsilon(x_t: jax.Array, eps: jax.Array, ab: jax.Array) -> jax.Array:
    """``(x_t - sqrt(1 - ab) eps) / sqrt(ab)`` (undefined at ab = 0)."""
    return (x_t - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)


def epsilon_from_x0(x_t: jax.Array, x0: jax.Array, ab: jax.Array) -> jax.Array:
    """``(x_t - sqrt(ab) x0) / sqrt(1 - ab)``."""
    return (x_t - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)


def v_from_x0_epsilon(x0: jax.Array, eps: jax.Array, ab: jax.Array) -> jax.Array:
    """The velocity target ``sqrt(ab) eps - sqrt(1 - ab) x0`` (Salimans & Ho 2022)."""
    return jnp.sqrt(ab) * eps - jnp.sqrt(1.0 - ab) * x0


def x0_from_v(x_t: jax.Array, v: jax.Array, ab: jax.Array) -> jax.Array:
    """``sqrt(ab) x_t - sqrt(1 - ab) v``."""
    return jnp.sqrt(ab) * x_t - jnp.sqrt(1.0 - ab) * v


def epsilon_from_v(x_t: jax.Array, v: jax.Array, ab: jax.Array) -> jax.Array:
    """``sqrt(ab) v + sqrt(1 - ab) x_t``."""
    return jnp.sqrt(ab) * v + jnp.sqrt(1.0 - ab) * x_t


def to_x0_and_epsilon(
    output: jax.Array, prediction: Prediction, x_t: jax.Array, ab: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Both the clean-vector and the noise estimate from a model ``output`` [..., D]."""
    if prediction == "x0":
        return output, epsilon_from_x0(x_t, output, ab)
    if prediction == "epsilon":
        return x0_from_epsilon(x_t, output, ab), output
    if prediction == "v":
        return x0_from_v(x_t, output, ab), epsilon_from_v(x_t, output, ab)
    raise ValueError(f"unknown prediction {prediction!r}; expected x0, epsilon or v")


def classifier_free_guidance(
    cond: jax.Array, uncond: jax.Array, scale: float, rescale: float = 0.0
) -> jax.Array:
    """``uncond + scale (cond - uncond)``, then rescaled toward the std of ``cond``.

    The rescaled prediction ``guided * std(cond) / std(guided)`` (std over the last axis, one
    vector at a time) is mixed in with weight ``rescale``; it undoes the variance blow-up
    of large guidance scales.
    """
    guided = uncond + scale * (cond - uncond)
    if rescale == 0.0:
        return guided
    ratio = jnp.std(cond, axis=-1, keepdims=True) / jnp.std(guided, axis=-1, keepdims=True)
    return guided * (rescale * ratio + (1.0 - rescale))


def ddim_step(
    x0: jax.Array,
    eps: jax.Array,
    ab_t: jax.Array,
    ab_prev: jax.Array,
    eta: float,
    noise: jax.Array,
) -> jax.Array:
    """``x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma noise``.

    ``sigma = eta * sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))`` (DDIM eq. 16).
    """
    var = (1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev)
    sigma = eta * jnp.sqrt(jnp.maximum(var, 0.0))
    direction = jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0)) * eps
    return jnp.sqrt(ab_prev) * x0 + direction + sigma * noise


@dataclasses.dataclass(frozen=True)
class DDIMSampler:
    """DDIM over trailing timesteps, with classifier-free guidance.

    Guidance combines the noise estimates; at a step with ``alpha_bar = 0`` (the first step
    of a zero-terminal-SNR schedule) the noise estimate is ``x_t`` itself for any model, so
    the clean estimate is taken from the conditional prediction there.

    Attributes:
        schedule: The training noise schedule.
        config: Sampling options.
        prediction: Parametrization of the model output.
    """

    schedule: DiscreteSchedule
    config: DDIMConfig
    prediction: Prediction = "x0"

    def __call__(
        self, cond: DenoiseFn, uncond: DenoiseFn | None, keys: jax.Array, dim: int
    ) -> jax.Array:
        """Sample one clean vector per key.

        Args:
            cond: The conditional denoiser.
            uncond: The unconditional denoiser (needed when ``guidance_scale != 1``).
            keys: PRNG keys [...]: key ``k`` draws the initial noise (``fold_in(k, 0)``) and
                the noise of step ``i`` (``fold_in(k, i + 1)``) of its vector.
            dim: Vector size D.

        Returns:
            The final clean estimate [..., D].
        """
        cfg = self.config
        guided = cfg.guidance_scale != 1.0
        if guided and uncond is None:
            raise ValueError("guidance_scale != 1 needs an unconditional denoiser")
        ts = trailing_timesteps(self.schedule.num_steps, cfg.steps)
        ab_all = self.schedule.alphas_cumprod
        if self.prediction == "epsilon" and ab_all[ts[0]] == 0.0:
            raise ValueError(
                "an epsilon-predicting model cannot estimate x0 from pure noise: use a schedule "
                "without zero terminal SNR, or x0/v prediction"
            )
        ab_t = jnp.asarray(ab_all[ts], jnp.float32)
        ab_prev = jnp.asarray(np.append(ab_all[ts[1:]], 1.0), jnp.float32)
        x = normal_from_keys(keys, dim, 0) * cfg.initial_noise_scale
        x = jnp.clip(x, -cfg.clip_noise, cfg.clip_noise)

        def step(x: jax.Array, inputs: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
            i, t, a, a_prev = inputs
            x0, eps = to_x0_and_epsilon(cond(x, t), self.prediction, x, a)
            if guided:
                _, eps_u = to_x0_and_epsilon(uncond(x, t), self.prediction, x, a)
                eps = classifier_free_guidance(eps, eps_u, cfg.guidance_scale, cfg.guidance_rescale)
                x0 = jnp.where(a > 0, x0_from_epsilon(x, eps, jnp.maximum(a, 1e-12)), x0)
            eps = eps / cfg.epsilon_scaling
            noise = normal_from_keys(keys, dim, i + 1) if cfg.eta > 0 else jnp.zeros_like(x)
            x = ddim_step(x0, eps, a, a_prev, cfg.eta, noise)
            return jnp.clip(x, -cfg.clip_noise, cfg.clip_noise), x0

        inputs = (jnp.arange(len(ts)), jnp.asarray(ts), ab_t, ab_prev)
        _, x0s = jax.lax.scan(step, x, inputs)
        return x0s[-1]

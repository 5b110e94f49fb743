"""Noise schedules, parametrization conversions and the DDIM sampler against closed forms."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lcm.models.common import drop_mask, normal_from_keys
from lcm.models.diffusion.ddim import (
    DDIMConfig,
    DDIMSampler,
    classifier_free_guidance,
    ddim_step,
    epsilon_from_v,
    epsilon_from_x0,
    to_x0_and_epsilon,
    trailing_timesteps,
    v_from_x0_epsilon,
    x0_from_epsilon,
    x0_from_v,
)
from lcm.models.diffusion.schedules import (
    CosineSchedule,
    ScheduleConfig,
    SigmoidSchedule,
    add_noise,
    discretize,
)

T = 100


def _cosine(t: float) -> float:
    return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


def _sigmoid(t: float, a: float = 1.5, b: float = 0.0) -> float:
    return 1.0 / (1.0 + math.exp(-(b - a * math.log(t / (1 - t)))))


@pytest.mark.parametrize(
    "kind, alpha_bar", [("cosine", _cosine), ("sigmoid", lambda t: _sigmoid(t, 1.5, -1.0))]
)
def test_alphas_cumprod_closed_form_without_rescaling(kind: str, alpha_bar) -> None:
    sched = discretize(
        ScheduleConfig(kind=kind, num_steps=T, zero_terminal_snr=False, sigmoid_beta=-1.0)
    )
    ab = sched.alphas_cumprod
    assert ab.shape == (T,)
    # Telescoping product: alphas_cumprod[i] = alpha_bar((i+1)/T) / alpha_bar(0).
    a0 = alpha_bar(1e-12) if kind == "sigmoid" else alpha_bar(0.0)
    for i in (0, 1, T // 2, T - 2):
        assert ab[i] == pytest.approx(alpha_bar((i + 1) / T) / a0, rel=1e-9)
    # The last beta is capped at 0.999, so the unrescaled schedule never reaches pure noise.
    assert ab[-1] == pytest.approx(ab[-2] * (1 - 0.999), rel=1e-9)
    assert ab[-1] > 0 and np.all(np.diff(ab) < 0)


@pytest.mark.parametrize("kind", ["cosine", "sigmoid"])
def test_zero_terminal_snr(kind: str) -> None:
    plain = discretize(ScheduleConfig(kind=kind, zero_terminal_snr=False))
    zsnr = discretize(ScheduleConfig(kind=kind, zero_terminal_snr=True))
    assert zsnr.alphas_cumprod[-1] == pytest.approx(0.0, abs=1e-15)
    assert zsnr.snr()[-1] == pytest.approx(0.0, abs=1e-15)
    assert zsnr.alphas_cumprod[0] == pytest.approx(plain.alphas_cumprod[0], rel=1e-12)
    assert np.all(np.diff(zsnr.alphas_cumprod) < 0)
    # The rescaling is affine in sqrt(alphas_cumprod).
    s_old, s_new = np.sqrt(plain.alphas_cumprod), np.sqrt(zsnr.alphas_cumprod)
    scale = s_old[0] / (s_old[0] - s_old[-1])
    np.testing.assert_allclose(s_new, (s_old - s_old[-1]) * scale, atol=1e-12)


def test_schedule_protocol_objects() -> None:
    t = np.array([0.25, 0.5])
    np.testing.assert_allclose(CosineSchedule().alpha_bar(t), [_cosine(0.25), _cosine(0.5)])
    np.testing.assert_allclose(SigmoidSchedule(1.5, 0.0).alpha_bar(t), [_sigmoid(0.25), 0.5])


def test_trailing_timesteps() -> None:
    np.testing.assert_array_equal(trailing_timesteps(100, 10), np.arange(99, 0, -10))
    np.testing.assert_array_equal(trailing_timesteps(100, 100), np.arange(99, -1, -1))
    np.testing.assert_array_equal(trailing_timesteps(100, 1), [99])
    ts = trailing_timesteps(100, 40)
    assert len(ts) == 40 and ts[0] == 99 and np.all(np.diff(ts) < 0) and ts[-1] >= 0
    with pytest.raises(ValueError):
        trailing_timesteps(100, 101)


def test_parametrization_conversions_round_trip() -> None:
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x0 = jax.random.normal(k1, (64, 8))
    eps = jax.random.normal(k2, (64, 8))
    ab = jax.random.uniform(k3, (64, 1), minval=0.01, maxval=0.99)
    x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * eps
    v = v_from_x0_epsilon(x0, eps, ab)
    np.testing.assert_allclose(epsilon_from_x0(x_t, x0, ab), eps, atol=1e-4)
    np.testing.assert_allclose(x0_from_epsilon(x_t, eps, ab), x0, atol=1e-4)
    np.testing.assert_allclose(x0_from_v(x_t, v, ab), x0, atol=1e-5)
    np.testing.assert_allclose(epsilon_from_v(x_t, v, ab), eps, atol=1e-5)
    for kind, out in (("x0", x0), ("epsilon", eps), ("v", v)):
        got_x0, got_eps = to_x0_and_epsilon(out, kind, x_t, ab)
        np.testing.assert_allclose(got_x0, x0, atol=1e-4)
        np.testing.assert_allclose(got_eps, eps, atol=1e-4)


def test_add_noise_is_the_forward_process() -> None:
    sched = discretize(ScheduleConfig())
    x0 = jnp.ones((3, 4))
    noise = jnp.full((3, 4), 2.0)
    t = jnp.array([0, 50, 99])
    ab = sched.alphas_cumprod[[0, 50, 99]][:, None]
    want = np.sqrt(ab) * 1.0 + np.sqrt(1 - ab) * 2.0
    np.testing.assert_allclose(add_noise(x0, noise, t, sched), np.broadcast_to(want, (3, 4)), 1e-6)
    np.testing.assert_allclose(add_noise(x0, noise, jnp.array([99]), sched)[0], 2.0, atol=1e-6)


def test_ddim_step_closed_form() -> None:
    x0, eps, noise = jnp.full(4, 1.0), jnp.full(4, -1.0), jnp.full(4, 0.5)
    # The last step (alpha_bar_prev = 1) lands on the clean estimate, whatever eta.
    np.testing.assert_allclose(ddim_step(x0, eps, 0.3, 1.0, 1.0, noise), x0, atol=1e-6)
    # eta = 0 stays on the trajectory of the same noise.
    want = math.sqrt(0.6) * 1.0 + math.sqrt(0.4) * -1.0
    np.testing.assert_allclose(ddim_step(x0, eps, 0.3, 0.6, 0.0, noise), want, atol=1e-6)
    # eta = 1: sigma^2 = (1 - a_prev) / (1 - a) * (1 - a / a_prev).
    sigma = math.sqrt(0.4 / 0.7 * (1 - 0.3 / 0.6))
    want = math.sqrt(0.6) - math.sqrt(0.4 - sigma**2) + 0.5 * sigma
    np.testing.assert_allclose(ddim_step(x0, eps, 0.3, 0.6, 1.0, noise), want, atol=1e-6)


def test_classifier_free_guidance_and_rescale() -> None:
    cond = jnp.array([[1.0, 2.0, 3.0, 6.0]])
    uncond = jnp.array([[0.0, 1.0, 1.0, 2.0]])
    np.testing.assert_allclose(classifier_free_guidance(cond, uncond, 1.0), cond)
    guided = uncond + 3 * (cond - uncond)
    np.testing.assert_allclose(classifier_free_guidance(cond, uncond, 3.0), guided)
    full = classifier_free_guidance(cond, uncond, 3.0, rescale=1.0)
    np.testing.assert_allclose(jnp.std(full), jnp.std(cond), rtol=1e-5)
    half = classifier_free_guidance(cond, uncond, 3.0, rescale=0.5)
    np.testing.assert_allclose(half, 0.5 * full + 0.5 * guided, rtol=1e-5)


@pytest.mark.parametrize("prediction", ["x0", "v"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampler_with_an_oracle_returns_its_target(prediction: str, eta: float) -> None:
    sched = discretize(ScheduleConfig(kind="sigmoid"))
    target = jax.random.normal(jax.random.key(1), (5, 8))
    ab = jnp.asarray(sched.alphas_cumprod, jnp.float32)

    def oracle(x_t: jax.Array, t: jax.Array) -> jax.Array:
        if prediction == "x0":
            return target
        eps = (x_t - jnp.sqrt(ab[t]) * target) / jnp.sqrt(1 - ab[t])
        return v_from_x0_epsilon(target, eps, ab[t])

    sampler = DDIMSampler(
        sched,
        DDIMConfig(
            steps=10, eta=eta, guidance_scale=1.0, guidance_rescale=0.0, epsilon_scaling=1.0
        ),
        prediction,
    )
    keys = jax.random.split(jax.random.key(2), 5)
    np.testing.assert_allclose(sampler(oracle, None, keys, 8), target, atol=1e-4)


def test_guided_sampler_interpolates_clean_estimates() -> None:
    """Guidance is linear in epsilon, hence in x0: the last estimate is u + w (c - u)."""
    sched = discretize(ScheduleConfig())
    c = jax.random.normal(jax.random.key(3), (4, 6))
    u = jax.random.normal(jax.random.key(4), (4, 6))
    sampler = DDIMSampler(
        sched, DDIMConfig(steps=8, guidance_scale=2.5, guidance_rescale=0.0), "x0"
    )
    out = sampler(lambda x, t: c, lambda x, t: u, jax.random.split(jax.random.key(5), 4), 6)
    np.testing.assert_allclose(out, u + 2.5 * (c - u), atol=1e-4)


def test_sampler_options_are_honoured() -> None:
    sched = discretize(ScheduleConfig())
    keys = jax.random.split(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="unconditional"):
        DDIMSampler(sched, DDIMConfig(guidance_scale=2.0))(lambda x, t: x, None, keys, 4)
    with pytest.raises(ValueError, match="epsilon-predicting"):
        DDIMSampler(sched, DDIMConfig(guidance_scale=1.0), "epsilon")(lambda x, t: x, None, keys, 4)
    # One step of a denoiser that returns its input gives back the initial noise.
    identity = lambda x, t: x  # noqa: E731
    for scale, clip in ((0.5, 100.0), (1.0, 0.1)):
        cfg = DDIMConfig(
            steps=1,
            initial_noise_scale=scale,
            clip_noise=clip,
            guidance_scale=1.0,
            guidance_rescale=0.0,
            epsilon_scaling=1.0,
        )
        want = jnp.clip(normal_from_keys(keys, 4, 0) * scale, -clip, clip)
        np.testing.assert_allclose(DDIMSampler(sched, cfg)(identity, None, keys, 4), want)


def test_cfg_dropout_rate() -> None:
    dropped = drop_mask(jax.random.key(0), (500, 200), 0.15)
    assert float(dropped.mean()) == pytest.approx(0.15, abs=0.005)
    assert not drop_mask(jax.random.key(0), (10, 10), 0.0).any()

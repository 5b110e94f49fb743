"""The codec's variational (CALM) recipe: variational latent with free-bits KL, latent dropout,
random token replacement; and that with it off the codec is exactly what it was."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from codec_fixtures import MEMORIZED, batch_of, prepared_data, tiny_model_config, train
from flax import nnx

import encoders
from encoders.codec import Codec, build_from_weights
from encoders.config import CodecDataConfig, CodecModelConfig
from encoders.model import CodecModel, gaussian_kl, replace_tokens
from encoders.tokenizer import EOS_ID, FIRST_ORDINARY_ID, MASK_ID, PAD_ID, UNK_ID, Tokenizer
from encoders.train import TASK, _objective
from lcm.nn.weights import flat_weights

# CALM's recipe as configs/encoders/codec_calm.yaml sets it, on the tiny test codec.
CALM = dict(
    variational=True,
    latent_dropout=0.15,
    token_replace_prob=0.15,
    denoise_prob=0.0,
    concept_noise=0.0,
)


@pytest.fixture(scope="module")
def tokens() -> np.ndarray:
    return batch_of(Tokenizer.load(prepared_data() / "tokenizer.model"), MEMORIZED, 32)


def _loss(cfg: CodecModelConfig, tokens: np.ndarray, key: int = 0) -> dict[str, float]:
    model = CodecModel(cfg, nnx.Rngs(0))
    _, metrics = jax.jit(model.loss)({"tokens": tokens}, jax.random.key(key))
    return {k: float(v) for k, v in metrics.items()}


# Loss and metrics of the tiny codec (nnx.Rngs(0), MEMORIZED at width 32, key 0) computed by
# the code before the recipe existed (commit c42b3d3): corruption, concept noise, dropout and
# the contrastive pass all on, then the plain defaults.
BEFORE = {
    "full": {
        "accuracy": 0.008695651777088642,
        "concept_norm": 2.011077642440796,
        "contrastive": 0.3380909264087677,
        "loss": 7.3737969398498535,
        "nll": 7.340735912322998,
        "tokens": 115.0,
    },
    "defaults": {
        "accuracy": 0.008695651777088642,
        "concept_norm": 2.0050289630889893,
        "loss": 7.51447057723999,
        "nll": 7.514920234680176,
        "tokens": 115.0,
    },
}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_with_the_recipe_off_the_loss_is_todays(tokens: np.ndarray, name: str) -> None:
    base = {"dropout": 0.1, "contrastive_weight": 0.1} if name == "full" else {}
    now = _loss(tiny_model_config(**base), tokens)
    assert now.keys() == BEFORE[name].keys()
    # Bit-identical on this project's CPU; another CPU may round a last bit differently
    # (tests/test_recorded_outputs.py), hence the float32-epsilon bound.
    for key, value in BEFORE[name].items():
        assert now[key] == pytest.approx(value, rel=2e-6, abs=2e-6), key
    # A zero KL weight changes nothing either while the codec is not variational.
    assert _loss(tiny_model_config(**base, kl_weight=0.0), tokens) == now


def test_parameter_paths_of_a_deterministic_codec_are_unchanged() -> None:
    old = flat_weights(CodecModel(tiny_model_config(), nnx.Rngs(0)))
    vae = flat_weights(CodecModel(tiny_model_config(variational=True), nnx.Rngs(0)))
    assert not [name for name in old if "log_var" in name]
    assert set(vae) - set(old) == {"encoder/log_var/kernel", "encoder/log_var/bias"}
    assert set(old) <= set(vae)
    # Today's checkpoint loads into today's config, and a variational config names what is
    # missing instead of silently starting a fresh head.
    build_from_weights(tiny_model_config(), old)
    with pytest.raises(ValueError, match="encoder/log_var"):
        build_from_weights(tiny_model_config(variational=True), old)


def test_the_shipped_codec_keeps_its_fingerprint() -> None:
    # The fingerprint hashes the config: the new fields, at their defaults, must not enter it
    # (datasets embedded with the shipped codec record this value).
    assert "variational" not in CodecModelConfig().identity()
    assert CodecModelConfig().identity() == repr(CodecModelConfig()).split(", variational")[0] + ")"
    assert "variational=True" in CodecModelConfig(variational=True).identity()
    assert encoders.load("default").fingerprint == "sha256:bb837602ae842d0af3a28c309660a71f"


def test_variational_encode_is_deterministic_and_the_posterior_mean(tokens: np.ndarray) -> None:
    cfg = tiny_model_config(**CALM)
    model = CodecModel(cfg, nnx.Rngs(0))
    encode = jax.jit(model.encode)
    first = np.asarray(encode(tokens))
    np.testing.assert_array_equal(np.asarray(encode(tokens)), first)
    mean, log_var = jax.jit(model.encoder.posterior)(tokens)
    np.testing.assert_array_equal(np.asarray(mean), first)
    assert log_var.shape == mean.shape == (len(MEMORIZED), cfg.concept_dim)
    # The mean head is the deterministic codec's projection: same weights, same vectors.
    plain = CodecModel(tiny_model_config(**{**CALM, "variational": False}), nnx.Rngs(0))
    np.testing.assert_array_equal(np.asarray(jax.jit(plain.encode)(tokens)), first)
    # Through the inference API too, call after call.
    codec = Codec(model, Tokenizer.load(prepared_data() / "tokenizer.model"), batch_size=8)
    np.testing.assert_allclose(codec.encode(MEMORIZED), first, atol=1e-5)
    np.testing.assert_array_equal(codec.encode(MEMORIZED), codec.encode(MEMORIZED))


def test_latent_dropout_acts_in_training_only(tokens: np.ndarray) -> None:
    dropped = CodecModel(tiny_model_config(**{**CALM, "latent_dropout": 0.5}), nnx.Rngs(0))
    kept = CodecModel(tiny_model_config(**{**CALM, "latent_dropout": 0.0}), nnx.Rngs(0))
    np.testing.assert_array_equal(
        np.asarray(jax.jit(dropped.encode)(tokens)), np.asarray(jax.jit(kept.encode)(tokens))
    )
    key = jax.random.key(0)
    loss_dropped = jax.jit(dropped.loss)({"tokens": tokens}, key)[0]
    loss_kept = jax.jit(kept.loss)({"tokens": tokens}, key)[0]
    assert float(loss_dropped) != float(loss_kept)


def test_gaussian_kl_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    mean = rng.normal(scale=0.7, size=(16, 32)).astype(np.float32)
    log_var = rng.normal(scale=1.5, size=(16, 32)).astype(np.float32)
    per_dim = 0.5 * (mean.astype(np.float64) ** 2 + np.exp(log_var) - 1.0 - log_var)
    assert (per_dim < 0.5).any() and (per_dim > 0.5).any()  # the floor bites somewhere
    for free_bits in (0.0, 0.5):
        expected = np.maximum(per_dim, free_bits).sum(axis=-1)
        got = np.asarray(gaussian_kl(jnp.asarray(mean), jnp.asarray(log_var), free_bits))
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    zero = gaussian_kl(jnp.zeros((2, 8)), jnp.zeros((2, 8)))  # q = the prior
    np.testing.assert_array_equal(np.asarray(zero), 0.0)


def test_the_kl_enters_the_loss_as_documented(tokens: np.ndarray) -> None:
    """loss = reconstruction + kl_weight * sum over sentences of the free-bits KL / tokens."""
    cfg = tiny_model_config(**CALM)
    model = CodecModel(cfg, nnx.Rngs(0))
    free = CodecModel(tiny_model_config(**CALM, kl_weight=0.0), nnx.Rngs(0))
    key = jax.random.key(3)
    loss, metrics = jax.jit(model.loss)({"tokens": tokens}, key)
    recon, recon_metrics = jax.jit(free.loss)({"tokens": tokens}, key)
    np.testing.assert_array_equal(np.asarray(recon_metrics["nll"]), np.asarray(metrics["nll"]))
    # The encoder's input in the loss is the replaced one: recompute it with the loss's key.
    k_replace = jax.random.split(jax.random.fold_in(key, 6), 3)[0]
    enc_in = replace_tokens(jnp.asarray(tokens), k_replace, prob=0.15, vocab_size=cfg.vocab_size)
    mean, log_var = model.encoder.posterior(enc_in)
    kl = np.asarray(gaussian_kl(mean, log_var, cfg.kl_free_bits))
    expected = float(recon) + cfg.kl_weight * kl.sum() / np.sum(tokens != PAD_ID)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    raw = np.asarray(gaussian_kl(mean, log_var)).mean()
    assert float(metrics["kl"]) == pytest.approx(raw, rel=1e-5)
    assert float(metrics["sigma"]) == pytest.approx(float(jnp.exp(0.5 * log_var).mean()), 1e-5)


def test_replace_tokens_replaces_the_share_asked_of_ordinary_tokens_only() -> None:
    vocab = 512
    rng = np.random.default_rng(0)
    tokens = np.zeros((256, 40), np.int32)
    for row in tokens:
        n = rng.integers(3, 39)
        row[:n] = rng.integers(FIRST_ORDINARY_ID, vocab, n)
        row[rng.integers(0, n, 2)] = (MASK_ID, UNK_ID)  # specials inside the sentence
        row[n] = EOS_ID
    out = np.asarray(
        replace_tokens(jnp.asarray(tokens), jax.random.key(0), prob=0.15, vocab_size=vocab)
    )
    ordinary = tokens >= FIRST_ORDINARY_ID
    changed = out != tokens
    assert not changed[~ordinary].any()  # PAD, EOS, <mask>, <unk> stay
    assert changed[ordinary].mean() == pytest.approx(0.15, abs=0.015)
    assert (out[changed] >= FIRST_ORDINARY_ID).all() and (out[changed] < vocab).all()
    assert len(np.unique(out[changed])) > 0.5 * (vocab - FIRST_ORDINARY_ID)  # spread out
    same = replace_tokens(jnp.asarray(tokens), jax.random.key(0), prob=0.0, vocab_size=vocab)
    np.testing.assert_array_equal(np.asarray(same), tokens)


@pytest.fixture(scope="module")
def trained() -> tuple[CodecModel, list[float]]:
    model = CodecModel(tiny_model_config(**CALM), nnx.Rngs(0))
    tokenizer = Tokenizer.load(prepared_data() / "tokenizer.model")
    losses = train(model, batch_of(tokenizer, MEMORIZED, 32), steps=30)
    return model, losses


def test_a_tiny_variational_codec_learns(trained: tuple[CodecModel, list[float]]) -> None:
    _, losses = trained
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_a_variational_codec_exports_loads_and_says_what_it_is(
    trained: tuple[CodecModel, list[float]], tokens: np.ndarray, tmp_path
) -> None:
    model, _ = trained
    out = tmp_path / "export"
    TASK.export(model, model.config, CodecDataConfig(data_dir=str(prepared_data())), str(out))
    loaded = encoders.load(out)
    assert loaded.config == model.config
    np.testing.assert_allclose(
        loaded.encode(MEMORIZED), np.asarray(jax.jit(model.encode)(tokens)), atol=1e-5
    )
    card = (out / "card.md").read_text()
    assert "- variational autoencoder (CALM's recipe): no input tokens masked or dropped" in card
    assert "15% of input tokens replaced" in card and "latent dropout 0.15" in card
    assert "KL weight 0.001, free bits 0.5 nats per dimension" in card
    assert "concept noise" not in card
    # Today's codec keeps the line its cards always had.
    assert _objective(CodecModelConfig()) == (
        "- denoising autoencoder: 50% of inputs corrupted (mask 0.1, drop 0.05), concept noise "
        "up to relative norm 0.15, label smoothing 0.05, contrastive weight 0.0"
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"latent_dropout": 1.0},
        {"token_replace_prob": -0.1},
        {"kl_weight": -1.0},
        {"kl_free_bits": -0.5},
    ],
)
def test_bad_recipe_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        tiny_model_config(**bad)

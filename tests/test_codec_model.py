"""Codec network, loss, tokenizer, data preparation and the trainer task."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from codec_fixtures import (
    FIXTURES,
    MEMORIZED,
    VOCAB,
    batch_of,
    prepared_data,
    tiny_model_config,
    train,
)
from flax import nnx

from encoders.config import CodecDataConfig
from encoders.data import CodecBatchSource, copies_of, prepare
from encoders.model import CodecModel, corrupt_tokens, relative_noise
from encoders.tokenizer import EOS_ID, MASK_ID, PAD_ID, Tokenizer
from encoders.train import TASK
from trainers.task import DataContext


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.load(prepared_data() / "tokenizer.model")


def test_tokenizer_round_trip_and_special_ids(tokenizer: Tokenizer) -> None:
    texts = ["Hello, world!", "Ünïcode — “quotes” and 3.14 ✓", "x"]
    ids = tokenizer.encode(texts)
    assert all(PAD_ID not in seq and EOS_ID not in seq for seq in ids)
    assert tokenizer.decode(ids) == texts  # byte fallback: nothing becomes <unk>
    assert tokenizer.decode([[*ids[0], EOS_ID, PAD_ID, MASK_ID]]) == [texts[0]]
    assert tokenizer.vocab_size == 512


def test_tokenizer_with_other_special_ids_is_rejected(tmp_path) -> None:
    import sentencepiece as spm

    text = prepared_data() / "train.txt"
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(tmp_path / "m"),
        vocab_size=400,
        character_coverage=0.99,
        minloglevel=2,
    )
    with pytest.raises(ValueError, match="special ids"):
        Tokenizer.load(tmp_path / "m.model")


def test_encoder_ignores_padding_amount_and_batch_composition(tokenizer: Tokenizer) -> None:
    model = CodecModel(tiny_model_config(), nnx.Rngs(0))
    encode = jax.jit(model.encode)
    short, wide = batch_of(tokenizer, MEMORIZED, 32), batch_of(tokenizer, MEMORIZED, 48)
    reference = encode(short)
    np.testing.assert_allclose(encode(wide), reference, atol=1e-5)
    np.testing.assert_allclose(encode(short[::-1])[::-1], reference, atol=1e-5)
    np.testing.assert_allclose(encode(short[2:3])[0], reference[2], atol=1e-5)


def test_corrupt_tokens_masks_and_drops_but_keeps_order_and_eos() -> None:
    tokens = jnp.array([[10, 11, 12, 13, 14, 15, EOS_ID, 0, 0]] * 64, jnp.int32)
    out = np.asarray(
        corrupt_tokens(tokens, jax.random.key(0), denoise_prob=1.0, mask_prob=0.3, drop_prob=0.3)
    )
    for row in out:
        real = row[row != PAD_ID]
        assert real[-1] == EOS_ID and np.all(row[len(real) :] == PAD_ID)
        kept = [t for t in real[:-1] if t != MASK_ID]
        assert kept == sorted(kept)  # surviving tokens keep their order
    assert (out == MASK_ID).any() and (np.sum(out != PAD_ID, axis=1) < 7).any()
    same = corrupt_tokens(tokens, jax.random.key(0), denoise_prob=0.0, mask_prob=0.3, drop_prob=0.3)
    np.testing.assert_array_equal(same, tokens)


def test_relative_noise_has_the_requested_relative_norm() -> None:
    v = 5.0 * jax.random.normal(jax.random.key(0), (256, 128))
    noisy = relative_noise(v, jax.random.key(1), 0.1)
    ratio = jnp.linalg.norm(noisy - v, axis=-1) / jnp.linalg.norm(v, axis=-1)
    assert float(jnp.mean(ratio)) == pytest.approx(0.1, rel=0.05)


def test_loss_metrics_and_no_rng_state(tokenizer: Tokenizer) -> None:
    model = TASK.build_model(tiny_model_config(), CodecDataConfig(), nnx.Rngs(0))
    assert not jax.tree.leaves(nnx.split(model, nnx.RngState, ...)[1])
    tokens = batch_of(tokenizer, MEMORIZED, 32)
    loss, metrics = jax.jit(model.loss)({"tokens": tokens}, jax.random.key(0))
    assert set(metrics) == {"loss", "nll", "accuracy", "concept_norm", "tokens"}
    assert metrics["tokens"] == np.sum(tokens != PAD_ID)
    assert np.isfinite(loss) and 0.0 <= metrics["accuracy"] <= 1.0
    assert all(jnp.ndim(v) == 0 for v in metrics.values())


def test_loss_decreases_with_full_denoising_objective(tokenizer: Tokenizer) -> None:
    cfg = tiny_model_config(contrastive_weight=0.1, dropout=0.1)
    losses = train(CodecModel(cfg, nnx.Rngs(0)), batch_of(tokenizer, MEMORIZED, 32), steps=30)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


@pytest.mark.parametrize(
    "variant",
    [
        {"positions": "learned", "ffn": "swiglu", "norm": "rmsnorm"},
        {"positions": "sinusoidal", "dtype": "bfloat16"},
    ],
)
def test_architecture_variants_give_finite_loss(tokenizer: Tokenizer, variant: dict) -> None:
    model = CodecModel(tiny_model_config(**variant), nnx.Rngs(0))
    loss, _ = jax.jit(model.loss)({"tokens": batch_of(tokenizer, MEMORIZED, 32)}, jax.random.key(0))
    assert np.isfinite(loss)


def test_remat_gives_the_same_loss_and_gradients(tokenizer: Tokenizer) -> None:
    tokens = batch_of(tokenizer, MEMORIZED, 32)

    def loss_and_grads(remat: bool) -> tuple[jax.Array, nnx.State]:
        # Dropout and the contrastive pass on: dropout keys and a second encoder pass cross
        # the rematerialized blocks too.
        cfg = tiny_model_config(remat=remat, dropout=0.1, contrastive_weight=0.1)
        graphdef, params = nnx.split(CodecModel(cfg, nnx.Rngs(0)), nnx.Param)

        def loss(p: nnx.State) -> jax.Array:
            return nnx.merge(graphdef, p).loss({"tokens": tokens}, jax.random.key(1))[0]

        return jax.jit(jax.value_and_grad(loss))(params)

    loss, grads = loss_and_grads(False)
    loss_r, grads_r = loss_and_grads(True)
    np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), grads_r, grads
    )


def test_prepared_data_splits_weights_and_holdout() -> None:
    root = prepared_data()
    manifest = json.loads((root / "manifest.json").read_text())
    per_source = manifest["per_source"]
    assert per_source["devil"]["train"] == per_source["devil"]["valid"] == 0
    assert per_source["devil"]["test"] > 0
    assert per_source["debian_pairs"]["train_mixture"] == pytest.approx(
        3 * per_source["debian_pairs"]["train"]
    )
    train = set((root / "train.txt").read_text().splitlines())
    test = (root / "test.txt").read_text().splitlines()
    assert len(test) == len(set(test)) and not train & set(test)
    offsets = np.load(root / "train.offsets.npy")
    assert len(offsets) == len(train) + 1 == len(np.load(root / "train.copies.npy")) + 1
    assert copies_of("some sentence", 2.0) == 2
    assert {copies_of(f"s{i}", 0.5) for i in range(50)} == {0, 1}


def _source(batch_size: int = 8, **kw) -> CodecBatchSource:
    cfg = CodecDataConfig(data_dir=str(prepared_data()), buckets=(16, 32, 48), pool_batches=4, **kw)
    return TASK.build_data(cfg, tiny_model_config(), DataContext(batch_size=batch_size, seed=3))


def test_batch_source_is_deterministic_bucketed_and_sharded() -> None:
    source = _source()
    shapes = set()
    for step in range(12):
        tokens = source.batch(step)["tokens"]
        assert tokens.dtype == np.int32 and tokens.shape[0] == 8
        shapes.add(tokens.shape[1])
        lengths = np.sum(tokens != PAD_ID, axis=1)
        assert np.all(tokens[np.arange(8), lengths - 1] == EOS_ID)
        np.testing.assert_array_equal(tokens, _source().batch(step)["tokens"])  # fresh object
    assert shapes <= {16, 32, 48} and len(shapes) > 1
    cfg = CodecDataConfig(data_dir=str(prepared_data()), buckets=(16, 32, 48), pool_batches=4)
    halves = [
        TASK.build_data(cfg, tiny_model_config(), DataContext(8, 3, i, 2)).batch(5)["tokens"]
        for i in range(2)
    ]
    np.testing.assert_array_equal(np.concatenate(halves), source.batch(5)["tokens"])


def test_batch_source_curriculum_starts_with_short_sentences() -> None:
    source = _source(curriculum_steps=32)  # limits 16, 32, 48 from steps 0, 16, 32
    assert source.stage_starts == [0, 16, 32]
    assert all(source.batch(s)["tokens"].shape[1] == 16 for s in range(16))
    assert {source.batch(s)["tokens"].shape[1] for s in range(16, 32)} <= {16, 32}
    assert max(source.batch(s)["tokens"].shape[1] for s in range(32, 48)) == 48


def test_batch_source_checks_vocabulary_and_data_dir(tmp_path) -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        CodecBatchSource(
            CodecDataConfig(data_dir=str(prepared_data())),
            tiny_model_config(vocab_size=600),
            batch_size=4,
            seed=0,
        )
    with pytest.raises(FileNotFoundError, match="prepare_codec_data"):
        CodecBatchSource(
            CodecDataConfig(data_dir=str(tmp_path)), tiny_model_config(), batch_size=4, seed=0
        )


def test_prepare_can_reuse_a_tokenizer(tmp_path) -> None:
    """A widened corpus keeps a running codec's token ids when its tokenizer is reused."""
    root = prepared_data()
    manifest = prepare(
        str(FIXTURES),
        str(tmp_path),
        pairs_path=str(FIXTURES / "pairs_small.jsonl.gz"),
        vocab_size=VOCAB,
        valid_fraction=0.1,
        test_fraction=0.1,
        holdout_sources=("devil",),
        tokenizer_path=str(root / "tokenizer.model"),
    )
    assert (tmp_path / "tokenizer.model").read_bytes() == (root / "tokenizer.model").read_bytes()
    assert manifest["settings"]["tokenizer_path"] == str(root / "tokenizer.model")
    np.testing.assert_array_equal(
        np.load(tmp_path / "train.tokens.npy"), np.load(root / "train.tokens.npy")
    )


def test_decoder_finetuning_with_a_frozen_encoder_keeps_the_concept_space(tmp_path) -> None:
    """``optim.frozen=[encoder,decoder/embed]`` (the token embedding is shared with the
    encoder) trains the decoder alone: every vector encodes exactly as before, so LCMs
    trained in the codec's space stay valid, while the decoder's layers move."""
    from conftest import REPO

    from trainers.config import load_train_config
    from trainers.loop import train
    from trainers.state import load_trained_model

    config = REPO / "configs/encoders/codec_tiny.yaml"
    common = [f"data.data_dir={prepared_data()}", "log_every=5", "checkpoint.every=100"]
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    train(load_train_config(config, [*common, f"run_dir={base}", "steps=10"]), progress=False)
    frozen = ["optim.frozen=[encoder,decoder/embed]", f"init_from={base}", "steps=10"]
    train(load_train_config(config, [*common, f"run_dir={tuned}", *frozen]), progress=False)
    _, before, _ = load_trained_model(base)
    _, after, _ = load_trained_model(tuned)
    tokenizer = Tokenizer.load(prepared_data() / "tokenizer.model")
    tokens = jnp.asarray(batch_of(tokenizer, MEMORIZED, 32))
    np.testing.assert_array_equal(np.asarray(after.encode(tokens)), before.encode(tokens))
    for name in ("memory", "blocks"):  # every matrix of the decoder's own layers moved
        old = jax.tree.leaves(nnx.state(getattr(before.decoder, name), nnx.Param))
        new = jax.tree.leaves(nnx.state(getattr(after.decoder, name), nnx.Param))
        moved = [not np.array_equal(a, b) for a, b in zip(old, new) if a.ndim > 1]
        assert moved and all(moved), name

"""The Codec inference API, model directories and the `lcm encode` / `lcm decode` commands."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from codec_fixtures import MEMORIZED, overfitted_codec, prepared_data

import encoders
from encoders import codec as codec_module
from encoders.codec import Codec, closest_candidates
from encoders.config import CodecDataConfig
from encoders.generate import (
    _argmax,
    _forbidden_bias,
    beam_search,
    cache_windows,
    greedy_search,
)
from encoders.tokenizer import BOS_ID, PAD_ID
from encoders.train import TASK
from lcm.cli.codec import decode_main, encode_main
from lcm.config import ConfigError


@pytest.fixture(scope="module")
def codec() -> Codec:
    return overfitted_codec()


@pytest.fixture(scope="module")
def model_dir(codec: Codec, tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("codec_model")
    codec.save(path)
    return path


def test_encode_shape_dtype_and_batch_independence(codec: Codec) -> None:
    vecs = codec.encode(MEMORIZED)
    assert vecs.shape == (len(MEMORIZED), 32) and vecs.dtype == np.float32
    alone = codec.encode([MEMORIZED[3]])
    np.testing.assert_allclose(alone[0], vecs[3], atol=1e-5)
    assert codec.encode([]).shape == (0, 32)


def test_greedy_and_beam_decoding_reproduce_training_sentences(codec: Codec) -> None:
    vecs = codec.encode(MEMORIZED)
    greedy = codec.decode(vecs)
    assert greedy == MEMORIZED
    assert codec.decode(vecs, beam_size=1) == greedy
    assert codec.decode(vecs, beam_size=3) == MEMORIZED


def test_beam_of_one_is_greedy_on_arbitrary_vectors(codec: Codec) -> None:
    vecs = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
    greedy = codec._generate(codec._state, vecs, max_len=20, beam_size=1)
    decoder = codec.model.decoder
    beam = jax.jit(lambda v: beam_search(decoder, v, 20, 1))(vecs)
    np.testing.assert_array_equal(greedy, beam)


def test_n_best_beams_are_distinct_and_ranked_by_normalized_log_probability(
    codec: Codec,
) -> None:
    vecs = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
    decoder = codec.model.decoder
    n_best = np.asarray(jax.jit(lambda v: beam_search(decoder, v, 20, 3, n_best=True))(vecs))
    assert n_best.shape == (5, 3, 20)
    assert all(len({tuple(beam) for beam in beams}) == 3 for beams in n_best)
    # Score every beam by a teacher-forced pass: log p(tokens) / length, as the search ranks.
    targets = n_best.reshape(15, 20)
    inputs = np.concatenate([np.full((15, 1), BOS_ID), targets[:, :-1]], axis=1)
    logits = decoder(jnp.asarray(inputs), jnp.asarray(np.repeat(vecs, 3, axis=0)))
    logp = jax.nn.log_softmax(logits + _forbidden_bias(logits.shape[-1]), axis=-1)
    token_logp = np.take_along_axis(np.asarray(logp), targets[..., None], axis=-1)[..., 0]
    real = targets != PAD_ID
    score = (np.where(real, token_logp, 0.0).sum(-1) / real.sum(-1)).reshape(5, 3)
    assert np.all(np.diff(score, axis=1) <= 1e-4), score


def test_beam_search_in_small_padded_calls_matches_one_call(codec: Codec, monkeypatch) -> None:
    vecs = codec.encode(MEMORIZED)
    vecs = vecs + np.random.default_rng(2).normal(size=vecs.shape).astype(np.float32)
    one_call = codec.decode(vecs, beam_size=3, rerank=True)
    monkeypatch.setattr(codec_module, "BEAM_ROWS", 12)  # calls of 4 sentences, the last padded
    assert codec_module.beam_call_rows(3, codec.batch_size) == 4 and len(vecs) % 4
    assert codec.decode(vecs, beam_size=3, rerank=True) == one_call


def test_rerank_returns_the_beam_whose_encoding_is_nearest(codec: Codec) -> None:
    clean = codec.encode(MEMORIZED)
    assert codec.decode(clean, beam_size=3, rerank=True) == MEMORIZED
    noise = np.random.default_rng(1).normal(size=clean.shape).astype(np.float32)
    vecs = clean + 0.5 * noise * np.linalg.norm(clean, axis=1, keepdims=True) / np.sqrt(32)
    k = 4
    beams = codec.tokenizer.decode(
        codec._generate_rows(vecs, max_len=codec.max_decode_len, beam_size=k, n_best=True)
    )
    chosen = codec.decode(vecs, beam_size=k, rerank=True)
    assert chosen != codec.decode(vecs, beam_size=k)  # the choice can differ from the best beam
    for i, text in enumerate(chosen):
        candidates = [t for t in beams[i * k : (i + 1) * k] if t.strip()]
        dist = {t: float(np.sum((codec.encode([t])[0] - vecs[i]) ** 2)) for t in candidates}
        assert dist[text] == pytest.approx(min(dist.values()), rel=1e-4)


def test_closest_candidates_skips_empty_ones_and_checks_counts() -> None:
    def encode(texts: list[str]) -> np.ndarray:  # a 1-D "space": the text's length
        return np.array([[float(len(t))] for t in texts], np.float32)

    vecs = np.array([[3.0], [10.0], [0.0]], np.float32)
    candidates = ["a", "abcd", "abc", "", "abcdefghi", "x", "", " ", ""]
    assert closest_candidates(vecs, candidates, encode) == ["abc", "abcdefghi", ""]
    with pytest.raises(ValueError, match="not K per vector"):
        closest_candidates(vecs, candidates[:-1], encode)
    assert closest_candidates(vecs[:0], [], encode) == []


def test_max_len_caps_generation(codec: Codec) -> None:
    texts = codec.decode(codec.encode(MEMORIZED[3:4]), max_len=3)
    assert len(codec.tokenizer.encode(texts)[0]) <= 3


def test_second_call_with_similar_lengths_does_not_recompile(codec: Codec) -> None:
    codec.encode(MEMORIZED[:4])
    codec.decode(codec.encode(MEMORIZED[:4]))
    sizes = codec._encode._cache_size(), codec._generate._cache_size()
    again = [s.replace(".", "!") for s in MEMORIZED[1:4]]
    codec.decode(codec.encode(again))
    assert (codec._encode._cache_size(), codec._generate._cache_size()) == sizes


@pytest.mark.parametrize(
    ("sentences", "error", "match"),
    [
        ("one string", TypeError, "not a single str"),
        (["fine", 3], TypeError, "item 1"),
        (["fine", ""], ValueError, "index 1"),
        (["   ", "fine", "\n"], ValueError, "2 empty or whitespace-only"),
    ],
)
def test_encode_rejects_bad_input(codec: Codec, sentences, error, match) -> None:
    with pytest.raises(error, match=match):
        codec.encode(sentences)


def test_encode_truncates_overlong_sentences_with_a_warning(codec: Codec, caplog) -> None:
    long = " ".join(["word"] * 200)
    with caplog.at_level(logging.WARNING, logger="encoders.codec"):
        vecs = codec.encode([long, MEMORIZED[0]])
    assert "truncated 1 sentence" in caplog.text
    assert np.isfinite(vecs).all()


@pytest.mark.parametrize(
    ("vectors", "match"),
    [
        (np.full((2, 32), np.nan, np.float32), "NaN or infinite values .* row 0, 1"),
        (np.array([[np.inf] + [0.0] * 31]), "NaN or infinite"),
        (np.full((2, 32), 1e39), "too large for float32"),
        (np.zeros((2, 31), np.float32), r"shape \[N, 32\], got shape \(2, 31\)"),
        (np.zeros(32, np.float32), r"got shape \(32,\)"),
        (np.zeros((1, 2, 32), np.float32), r"got shape \(1, 2, 32\)"),
        (np.array([["a"] * 32]), "real numbers"),
        ([[0.0] * 32, [0.0] * 3], "rectangular|shape"),
    ],
)
def test_decode_rejects_bad_vectors(codec: Codec, vectors, match) -> None:
    with pytest.raises(ValueError, match=match):
        codec.decode(vectors)


def test_decode_rejects_bad_options(codec: Codec) -> None:
    vecs = np.zeros((1, 32), np.float32)
    with pytest.raises(ValueError, match="beam_size"):
        codec.decode(vecs, beam_size=0)
    with pytest.raises(ValueError, match="rerank=True .* beam_size > 1"):
        codec.decode(vecs, rerank=True)
    with pytest.raises(ValueError, match="max_len"):
        codec.decode(vecs, max_len=1000)


def test_save_load_round_trip_is_identical(codec: Codec, model_dir) -> None:
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "card.md",
        "config.yaml",
        "tokenizer.model",
        "weights.npz",
    ]
    loaded = encoders.load(model_dir)
    np.testing.assert_array_equal(loaded.encode(MEMORIZED), codec.encode(MEMORIZED))
    assert loaded.decode(loaded.encode(MEMORIZED)) == MEMORIZED


def test_float16_weights_load_as_float32(codec: Codec, tmp_path) -> None:
    codec.save(tmp_path, weights_dtype="float16")
    loaded = Codec.load(tmp_path)
    assert jax.tree.leaves(loaded._state)[0].dtype == np.float32
    np.testing.assert_allclose(loaded.encode(MEMORIZED), codec.encode(MEMORIZED), atol=0.05)


def _copy_dir(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_load_validates_the_model_directory(model_dir, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        Codec.load(tmp_path / "nowhere")
    missing = _copy_dir(model_dir, tmp_path / "missing")
    (missing / "weights.npz").unlink()
    with pytest.raises(FileNotFoundError, match="missing weights.npz"):
        Codec.load(missing)
    unknown = _copy_dir(model_dir, tmp_path / "unknown")
    cfg = yaml.safe_load((unknown / "config.yaml").read_text())
    (unknown / "config.yaml").write_text(yaml.safe_dump({**cfg, "colour": "red"}))
    with pytest.raises(ConfigError, match="unknown config key 'colour'"):
        Codec.load(unknown)
    wider = _copy_dir(model_dir, tmp_path / "wider")
    (wider / "config.yaml").write_text(yaml.safe_dump({**cfg, "mlp_dim": 256}))
    with pytest.raises(ValueError, match=r"'decoder/blocks/0/ffn/down/kernel' has shape"):
        Codec.load(wider)
    deeper = _copy_dir(model_dir, tmp_path / "deeper")
    (deeper / "config.yaml").write_text(yaml.safe_dump({**cfg, "encoder_layers": 2}))
    with pytest.raises(ValueError, match="missing variable 'encoder/blocks/1/"):
        Codec.load(deeper)
    vocab = _copy_dir(model_dir, tmp_path / "vocab")
    (vocab / "config.yaml").write_text(yaml.safe_dump({**cfg, "vocab_size": 600}))
    with pytest.raises(ValueError, match="has shape|vocab"):
        Codec.load(vocab)


def test_load_default_explains_when_not_shipped(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(encoders.loader, "DEFAULT_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="default codec is not shipped yet"):
        encoders.load("default")


def test_task_export_writes_a_loadable_model_dir(codec: Codec, tmp_path) -> None:
    data_cfg = CodecDataConfig(data_dir=str(prepared_data()))
    TASK.export(codec.model, codec.config, data_cfg, str(tmp_path / "export"))
    loaded = encoders.load(tmp_path / "export")
    assert "Training data" in (tmp_path / "export" / "card.md").read_text()
    assert loaded.decode(loaded.encode(MEMORIZED[:2])) == MEMORIZED[:2]
    assert loaded.config == codec.config


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_cli_encode_then_decode(model_dir, tmp_path, suffix: str, capsys) -> None:
    text = tmp_path / "in.txt"
    text.write_text("\n".join(MEMORIZED) + "\n")
    vectors = tmp_path / f"vecs{suffix}"
    assert encode_main([str(text), "-o", str(vectors), "--model", str(model_dir)]) == 0
    if suffix == ".parquet":
        table = pq.read_table(vectors)
        assert table.column("text").to_pylist() == MEMORIZED
    else:
        assert np.load(vectors).shape == (len(MEMORIZED), 32)
    out = tmp_path / "out.txt"
    assert decode_main([str(vectors), "-o", str(out), "--model", str(model_dir)]) == 0
    assert out.read_text().splitlines() == MEMORIZED
    args = [str(vectors), "-o", str(out), "--model", str(model_dir), "--beam-size", "3"]
    assert decode_main([*args, "--rerank"]) == 0
    assert out.read_text().splitlines() == MEMORIZED
    with pytest.raises(SystemExit) as stop:  # checked before the model is loaded
        decode_main([str(vectors), "--model", str(model_dir / "missing"), "--rerank"])
    assert stop.value.code == 2 and "--beam-size 2 or more" in capsys.readouterr().err


def test_cli_reports_bad_input(model_dir, tmp_path, capsys) -> None:
    text = tmp_path / "in.txt"
    text.write_text("A sentence.\n\nAnother one.\n")
    assert encode_main([str(text), "-o", str(tmp_path / "v.npy"), "--model", str(model_dir)]) == 2
    assert "blank line(s) (line 2)" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 7), np.float32))
    assert decode_main([str(bad), "--model", str(model_dir)]) == 2
    assert "shape [N, 32]" in capsys.readouterr().err


def test_bfloat16_encoding_is_close_to_float32_and_can_be_switched_back(codec: Codec) -> None:
    exact = codec.encode(MEMORIZED)
    codec.encode_precision = "bfloat16"
    try:
        fast = codec.encode(MEMORIZED)
        alone = codec.encode([MEMORIZED[3]])
    finally:
        codec.encode_precision = "float32"
    rel = np.linalg.norm(fast - exact, axis=1) / np.linalg.norm(exact, axis=1)
    assert fast.dtype == np.float32
    assert 0 < rel.max() < 2e-2, rel  # rounded products, but the same vectors
    np.testing.assert_allclose(alone[0], fast[3], atol=1e-5)
    assert codec.decode(fast) == MEMORIZED
    np.testing.assert_array_equal(codec.encode(MEMORIZED), exact)  # float32 again, exactly
    with pytest.raises(ValueError, match="encode_precision must be one of"):
        codec.encode_precision = "float16"


def test_load_and_cli_take_the_encode_precision(model_dir, tmp_path) -> None:
    loaded = encoders.load(model_dir, encode_precision="bfloat16")
    assert loaded.encode_precision == "bfloat16"
    text = tmp_path / "in.txt"
    text.write_text("\n".join(MEMORIZED) + "\n")
    out = tmp_path / "v.npy"
    args = [str(text), "-o", str(out), "--model", str(model_dir), "--precision", "bfloat16"]
    assert encode_main(args) == 0
    np.testing.assert_array_equal(np.load(out), loaded.encode(MEMORIZED))


def test_decoding_through_cache_windows_matches_one_full_cache(codec: Codec) -> None:
    assert cache_windows(48) == (16, 32, 48) and cache_windows(16) == (16,)
    decoder = codec.model.decoder
    # Random vectors rarely hit EOS with a tiny model: rows run through every window.
    vecs = np.random.default_rng(1).normal(size=(6, 32)).astype(np.float32) * 3
    vecs = np.concatenate([vecs, codec.encode(MEMORIZED)])
    grown = jax.jit(lambda v: greedy_search(decoder, v, 40))(vecs)
    whole = jax.jit(lambda v: greedy_search(decoder, v, 40, windows=(40,)))(vecs)
    np.testing.assert_array_equal(grown, whole)
    assert (np.asarray(grown) != PAD_ID).sum(axis=1).max() > 32  # the last window was used
    logits = jnp.asarray([[0.0, 2.0, 2.0, -1.0], [5.0, 1.0, 0.0, 5.0]])
    np.testing.assert_array_equal(_argmax(logits), jnp.argmax(logits, axis=-1))

"""SONAR compatibility: the architectures, the converter and the tokenizer.

Without the reference venv these check the converter and the Flax models against a
hand-built fairseq2-style state dict and a float64 numpy transcription of fairseq2's
computations. With it (``LCM_SONAR_PYTHON``, or ``.venv-sonar`` / ``~/venvs/sonar``; build
one with ``tools/setup_sonar_venv.sh``) they compare against the real sonar-space + fairseq2
models: random ``small`` encoder and ``toy`` decoder, converted from saved checkpoints.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import math
import os
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece as spm
from conftest import REPO
from flax import nnx

import encoders
from encoders.codec import Codec
from encoders.config import CodecModelConfig
from encoders.model import CodecModel
from encoders.sonar import (
    DECODER_ARCHS,
    ENCODER_ARCHS,
    EOS_IDX,
    SONAR_LANGS,
    SonarCodec,
    SonarCodecConfig,
    SonarModel,
    SonarTokenizer,
    SonarTransformerConfig,
    sinusoid_table,
    sonar_beam_search,
    sonar_greedy_search,
)
from encoders.sonar.convert import (
    LEGACY_ROW_ORDER,
    ConversionError,
    convert_state_dict,
    expected_shapes,
)
from encoders.sonar.convert import (
    main as convert_main,
)
from encoders.tokenizer import train_tokenizer
from lcm.cli.codec import decode_main, encode_main
from lcm.nn.weights import build_with_weights

FIXTURES = REPO / "tests" / "fixtures"
TOY_ENC, TOY_DEC = ENCODER_ARCHS["toy"], DECODER_ARCHS["toy"]
# The toy vocabulary (1024) = SentencePiece pieces + PAD + 202 language tags + 3 data tags.
TOY_PIECES = TOY_DEC.vocab_size - 1 - len(SONAR_LANGS) - 3
SENTENCES = [
    "The cat sat on the mat.",
    "Install the package with pip.",
    "In the beginning God created the heavens and the earth.",
    "She laughed.",
]


# ---------------------------------------------------------------- fixtures and references


@functools.cache
def corpus_texts() -> tuple[str, ...]:
    """The paragraphs of the committed corpus sample."""
    texts = []
    with gzip.open(FIXTURES / "corpus_small.docs.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            texts += json.loads(line)["paragraphs"]
    return tuple(texts)


@functools.cache
def nllb_like_model() -> bytes:
    """A small SentencePiece model with the NLLB model's conventions (unk 0, bos 1, eos 2,
    no pad), trained on the committed corpus sample."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_texts()),
        model_writer=buffer,
        vocab_size=TOY_PIECES,
        model_type="unigram",
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    return buffer.getvalue()


@pytest.fixture(scope="module")
def nllb_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nllb") / "sentencepiece.model"
    path.write_bytes(nllb_like_model())
    return path


def random_state_dict(kind: str, cfg, seed: int = 0) -> dict[str, np.ndarray]:
    """A fairseq2-named state dict of random values at initialization-like scales."""
    rng = np.random.default_rng(seed)
    sd = {}
    for key, shape in expected_shapes(kind, cfg).items():
        if key.endswith("embed.weight"):
            value = rng.normal(0.0, cfg.model_dim**-0.5, shape)
        elif "layer_norm" in key:
            value = (1.0 if key.endswith("weight") else 0.0) + 0.1 * rng.normal(size=shape)
        elif key.endswith("bias"):
            value = 0.1 * rng.normal(size=shape)
        else:
            value = rng.normal(0.0, shape[1] ** -0.5, shape)
        sd[key] = value.astype(np.float32)
    if kind == "decoder":
        sd["final_proj.weight"] = sd["decoder_frontend.embed.weight"]
    return sd


def to_legacy(sd: dict[str, np.ndarray], kind: str) -> dict[str, np.ndarray]:
    """The fairseq (v1) names and embedding row order of a fairseq2-named state dict."""
    out = {}
    renames = [
        ("self_attn.output_proj.", "self_attn.out_proj."),
        ("encoder_decoder_attn.output_proj.", "encoder_attn.out_proj."),
        ("encoder_decoder_attn_layer_norm.", "encoder_attn_layer_norm."),
        ("encoder_decoder_attn.", "encoder_attn."),
        ("ffn.inner_proj.", "fc1."),
        ("ffn.output_proj.", "fc2."),
        ("ffn_layer_norm.", "final_layer_norm."),
    ]
    inverse = np.argsort(LEGACY_ROW_ORDER)
    for key, value in sd.items():
        name = key.replace(f"{kind}_frontend.embed.", "embed_tokens.")
        name = name.replace(f"{kind}.layers.", "layers.").replace(
            "decoder.layer_norm.", "layer_norm."
        )
        name = name.replace("final_proj.", "output_projection.")
        for new, old in renames:
            name = name.replace(new, old)
        if name in ("embed_tokens.weight", "output_projection.weight"):
            value = value.copy()
            value[:4] = sd[key][inverse]
        out[f"{kind}.{name}"] = value  # under the full fairseq model's prefix
    out[f"{kind}.version"] = np.array([3.0], np.float32)
    return out


def np_layer_norm(x: np.ndarray, sd: dict, name: str) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * sd[f"{name}.weight"] + sd[f"{name}.bias"]


def np_linear(x: np.ndarray, sd: dict, name: str) -> np.ndarray:
    return x @ sd[f"{name}.weight"].T.astype(np.float64) + sd[f"{name}.bias"]


def np_attention(q_in, kv_in, sd, name, heads, key_mask=None, causal=False) -> np.ndarray:
    """fairseq2 StandardMultiheadAttention in float64: [B, T, d] x [B, S, d] -> [B, T, d]."""
    b, t, d = q_in.shape
    s, h = kv_in.shape[1], d // heads
    q = np_linear(q_in, sd, f"{name}.q_proj").reshape(b, t, heads, h)
    k = np_linear(kv_in, sd, f"{name}.k_proj").reshape(b, s, heads, h)
    v = np_linear(kv_in, sd, f"{name}.v_proj").reshape(b, s, heads, h)
    logits = np.einsum("bthd,bshd->bhts", q, k) / math.sqrt(h)
    allowed = np.ones((b, 1, t, s), bool)
    if key_mask is not None:
        allowed &= key_mask[:, None, None, :]
    if causal:
        allowed &= np.tril(np.ones((t, s), bool))[None, None]
    logits = np.where(allowed, logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = np.einsum("bhts,bshd->bthd", weights, v).reshape(b, t, d)
    return np_linear(out, sd, f"{name}.output_proj")


def np_positions(n: int, d: int, offset: int = 2) -> np.ndarray:
    """fairseq2's sinusoids, in float64: steps offset.., w_i = 10000^(-i / (d/2 - 1))."""
    half = d // 2
    angles = np.arange(offset, offset + n)[:, None] * 10000.0 ** (-np.arange(half) / (half - 1))
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def np_frontend(sd: dict, kind: str, tokens: np.ndarray) -> np.ndarray:
    table = sd[f"{kind}_frontend.embed.weight"].astype(np.float64)
    d = table.shape[1]
    return table[tokens] * math.sqrt(d) + np_positions(tokens.shape[1], d)[None]


def np_ffn(x: np.ndarray, sd: dict, name: str) -> np.ndarray:
    return np_linear(
        np.maximum(np_linear(x, sd, f"{name}.inner_proj"), 0.0), sd, f"{name}.output_proj"
    )


def np_encoder(sd: dict, tokens: np.ndarray, cfg) -> np.ndarray:
    """SONAR's text encoder (pre-LN, final LN, masked mean pooling) in float64."""
    mask = tokens != 0
    x = np_frontend(sd, "encoder", tokens)
    for i in range(cfg.num_layers):
        p = f"encoder.layers.{i}"
        h = np_layer_norm(x, sd, f"{p}.self_attn_layer_norm")
        x = x + np_attention(h, h, sd, f"{p}.self_attn", cfg.num_heads, key_mask=mask)
        x = x + np_ffn(np_layer_norm(x, sd, f"{p}.ffn_layer_norm"), sd, f"{p}.ffn")
    x = np_layer_norm(x, sd, "layer_norm")
    return (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)


def np_decoder_logits(sd: dict, tokens: np.ndarray, vectors: np.ndarray, cfg) -> np.ndarray:
    """SONAR's text decoder, teacher-forced, in float64, with the full encoder-decoder
    attention (query, key and layer norm included) over the one-vector memory."""
    x = np_frontend(sd, "decoder", tokens)
    memory = vectors[:, None, :].astype(np.float64)
    for i in range(cfg.num_layers):
        p = f"decoder.layers.{i}"
        h = np_layer_norm(x, sd, f"{p}.self_attn_layer_norm")
        x = x + np_attention(h, h, sd, f"{p}.self_attn", cfg.num_heads, causal=True)
        h = np_layer_norm(x, sd, f"{p}.encoder_decoder_attn_layer_norm")
        x = x + np_attention(h, memory, sd, f"{p}.encoder_decoder_attn", cfg.num_heads)
        x = x + np_ffn(np_layer_norm(x, sd, f"{p}.ffn_layer_norm"), sd, f"{p}.ffn")
    x = np_layer_norm(x, sd, "decoder.layer_norm")
    return x @ sd["decoder_frontend.embed.weight"].T.astype(np.float64)


def toy_model(enc_sd: dict | None, dec_sd: dict | None, langs=SONAR_LANGS) -> SonarModel:
    weights, parts = {}, {}
    for kind, sd in (("encoder", enc_sd), ("decoder", dec_sd)):
        if sd is not None:
            _, cfg, w = convert_state_dict(sd)
            weights.update(w)
            parts[kind] = cfg
    cfg = SonarCodecConfig(**parts, langs=tuple(langs))
    return build_with_weights(lambda: SonarModel(cfg, nnx.Rngs(0)), weights)


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest row-wise ||a - b|| / ||b||."""
    return float(np.max(np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)))


# ---------------------------------------------------------------- without the reference venv


def test_sinusoids_follow_fairseq2_with_legacy_offset() -> None:
    table = sinusoid_table(514, 1024, 2)
    assert table.shape == (514, 1024) and table.dtype == np.float32
    # float32 steps * frequencies, as fairseq2 computes them: up to ~5e-5 off at step 500.
    np.testing.assert_allclose(table, np_positions(514, 1024, 2), atol=1e-4)
    # Position 0 is step 2 (1 + fairseq's pad index): not the step-0 encoding [0.., 1..].
    np.testing.assert_allclose(
        table[0, :512], np.sin(2.0 * 10000.0 ** (-np.arange(512) / 511)), atol=1e-6
    )
    np.testing.assert_allclose(sinusoid_table(4, 8, 0)[0], [0, 0, 0, 0, 1, 1, 1, 1])


def test_tokenizer_has_fairseq2_nllb_layout(nllb_file: Path) -> None:
    sp = spm.SentencePieceProcessor(model_proto=nllb_file.read_bytes())
    tok = SonarTokenizer.from_nllb(nllb_file)
    assert tok.vocab_size == TOY_DEC.vocab_size
    # <pad> at 0 shifts every piece by one; the tags follow the pieces, in SONAR's order.
    assert [tok.lang_id(x) for x in ("ace_Arab", "eng_Latn", "zul_Latn")] == [
        TOY_PIECES + 1,
        TOY_PIECES + 1 + SONAR_LANGS.index("eng_Latn"),
        TOY_PIECES + len(SONAR_LANGS),
    ]
    assert tok.encode(SENTENCES) == [[i + 1 for i in ids] for ids in sp.encode(SENTENCES)]
    ids = tok.encode(SENTENCES[:1])[0]
    assert tok.decode([[tok.lang_id("fra_Latn"), *ids, EOS_IDX, 0]]) == SENTENCES[:1]
    # A converted model is taken as it is; adding the symbols twice is refused.
    converted = nllb_file.with_name("converted.model")
    tok.save(converted)
    assert SonarTokenizer.from_nllb(converted).encode(SENTENCES) == tok.encode(SENTENCES)
    with pytest.raises(ValueError, match="did you mean eng_Latn"):
        tok.lang_id("eng")


def test_hand_built_state_dict_matches_numpy_fairseq2() -> None:
    enc_sd, dec_sd = (
        random_state_dict("encoder", TOY_ENC, 1),
        random_state_dict("decoder", TOY_DEC, 2),
    )
    model = toy_model(enc_sd, dec_sd)
    rng = np.random.default_rng(0)
    tokens = rng.integers(4, TOY_ENC.vocab_size, (3, 9))
    tokens[:, 0], tokens[0, 8], tokens[1, 5], tokens[1, 6:] = 900, EOS_IDX, EOS_IDX, 0
    tokens[2, 2], tokens[2, 3:] = EOS_IDX, 0
    ours = np.asarray(model.encode(jnp.asarray(tokens, jnp.int32)))
    assert rel_diff(ours, np_encoder(enc_sd, tokens, TOY_ENC)) < 1e-5
    # Padding never changes a row's vector.
    wider = np.pad(tokens, [(0, 0), (0, 7)])
    np.testing.assert_allclose(
        np.asarray(model.encode(jnp.asarray(wider, jnp.int32))), ours, atol=1e-6
    )

    dec_in = np.concatenate([np.full((3, 1), EOS_IDX), np.full((3, 1), 900), tokens[:, 1:6]], 1)
    logits = np.asarray(model.decoder(jnp.asarray(dec_in, jnp.int32), jnp.asarray(ours)))
    reference = np_decoder_logits(dec_sd, dec_in, ours, TOY_DEC)
    assert rel_diff(logits, reference) < 1e-5

    # Greedy decoding: the numpy model's argmax at every step (PAD never chosen).
    steps = 6
    got = np.asarray(sonar_greedy_search(model.decoder, jnp.asarray(ours), 900, steps))
    seqs = np.concatenate([np.full((3, 1), EOS_IDX), np.full((3, 1), 900)], 1)
    for _ in range(steps - 1):
        step = np_decoder_logits(dec_sd, seqs, ours, TOY_DEC)[:, -1]
        step[:, 0] = -np.inf
        seqs = np.concatenate([seqs, step.argmax(-1)[:, None]], 1)
    for row, want in zip(got, seqs[:, 2:]):
        n = list(row).index(EOS_IDX) if EOS_IDX in row else steps
        np.testing.assert_array_equal(row[: min(n, steps - 1)], want[: min(n, steps - 1)])
    assert all(row[-1] in (EOS_IDX, 0) for row in got)  # EOS forced at the last step


def test_beam_one_is_greedy_and_beams_end_with_eos() -> None:
    model = toy_model(None, random_state_dict("decoder", TOY_DEC, 3))
    vectors = jnp.asarray(np.random.default_rng(1).normal(size=(4, 32)), jnp.float32)
    greedy = np.asarray(sonar_greedy_search(model.decoder, vectors, 865, 12))
    np.testing.assert_array_equal(
        np.asarray(sonar_beam_search(model.decoder, vectors, 865, 12, 1)), greedy
    )
    beams = np.asarray(sonar_beam_search(model.decoder, vectors, 865, 12, 3))
    assert beams.shape == (4, 12) and all(EOS_IDX in row for row in beams)
    n_best = np.asarray(sonar_beam_search(model.decoder, vectors, 865, 12, 3, n_best=True))
    assert n_best.shape == (4, 3, 12)
    np.testing.assert_array_equal(n_best[:, 0], beams)
    assert all(len({tuple(b) for b in hyps}) == 3 for hyps in n_best)


def test_legacy_fairseq_checkpoints_convert_to_the_same_weights() -> None:
    for kind, cfg in (("encoder", TOY_ENC), ("decoder", TOY_DEC)):
        sd = random_state_dict(kind, cfg, 4)
        legacy = {"model": {"state_dict": to_legacy(sd, kind)}}
        legacy["model"]["state_dict"][f"{kind}.embed_positions._float_tensor"] = np.zeros(1)
        _, cfg_a, new = convert_state_dict({"model": sd})
        _, cfg_b, old = convert_state_dict(legacy)
        assert cfg_a == cfg_b == cfg and new.keys() == old.keys()
        for key in new:
            np.testing.assert_array_equal(new[key], old[key], err_msg=key)


def test_conversion_errors_name_the_problem() -> None:
    sd = random_state_dict("encoder", TOY_ENC)
    with pytest.raises(ConversionError, match="encoder.layers.1.ffn.inner_proj.bias"):
        convert_state_dict(
            {k: v for k, v in sd.items() if k != "encoder.layers.1.ffn.inner_proj.bias"}
        )
    bad = dict(sd, **{"encoder.layers.0.self_attn.q_proj.weight": np.zeros((32, 16), np.float32)})
    with pytest.raises(ConversionError, match=r"q_proj.weight has shape \(32, 16\).*\(32, 32\)"):
        convert_state_dict(bad)
    with pytest.raises(ConversionError, match="unknown encoder arch 'huge'"):
        convert_state_dict(sd, arch="huge")
    with pytest.raises(ConversionError, match="matches no SONAR encoder arch"):
        convert_state_dict({k: v for k, v in sd.items() if ".layers.1." not in k})
    with pytest.raises(ConversionError, match="missing for arch 'basic'"):
        convert_state_dict(sd, arch="basic")
    with pytest.raises(ConversionError, match="expected a SONAR decoder, found a encoder"):
        convert_state_dict(sd, kind="decoder")
    dec = random_state_dict("decoder", TOY_DEC)
    with pytest.raises(ConversionError, match="ties its output projection"):
        convert_state_dict(dict(dec, **{"final_proj.weight": dec["final_proj.weight"] + 1}))
    with pytest.raises(ConversionError, match="unexpected tensor"):
        convert_state_dict(dict(dec, **{"decoder.extra.weight": np.zeros(3, np.float32)}))
    with pytest.raises(ConversionError, match="not a SONAR text encoder or decoder"):
        convert_state_dict({"linear.weight": np.zeros((2, 2))})
    with pytest.raises(ConversionError, match="no tensors found"):
        convert_state_dict({"model": {"args": "x"}})


def test_model_directory_round_trip(nllb_file: Path, tmp_path: Path) -> None:
    enc_sd, dec_sd = (
        random_state_dict("encoder", TOY_ENC, 5),
        random_state_dict("decoder", TOY_DEC, 6),
    )
    codec = SonarCodec(toy_model(enc_sd, dec_sd), SonarTokenizer.from_nllb(nllb_file), batch_size=8)
    codec.save(tmp_path / "sonar")
    loaded = encoders.load(tmp_path / "sonar")
    assert isinstance(loaded, SonarCodec) and loaded.dim == 32
    vectors = loaded.encode(SENTENCES)
    np.testing.assert_allclose(vectors, codec.encode(SENTENCES), atol=1e-6)
    # The rows are the encoder's outputs on "__eng_Latn__ pieces </s>".
    tok = loaded.tokenizer
    rows = [[tok.lang_id("eng_Latn"), *ids, EOS_IDX] for ids in tok.encode(SENTENCES)]
    width = max(map(len, rows))
    tokens = np.array([r + [0] * (width - len(r)) for r in rows])
    assert rel_diff(vectors, np_encoder(enc_sd, tokens, TOY_ENC)) < 1e-5
    # Languages: per call, as load() options, and as errors.
    french = loaded.encode(SENTENCES, lang="fra_Latn")
    assert not np.allclose(french, vectors)
    np.testing.assert_allclose(
        encoders.load(tmp_path / "sonar", source_lang="fra_Latn").encode(SENTENCES),
        french,
        atol=1e-6,
    )
    texts = loaded.decode(vectors, max_len=16)
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
    assert loaded.decode(vectors, max_len=16, beam_size=2, lang="deu_Latn") is not None
    # Reranking picks the hypothesis whose encoding (in the written language) is nearest.
    chosen = loaded.decode(vectors, max_len=16, beam_size=3, lang="deu_Latn", rerank=True)
    hyps = tok.decode(
        loaded._generate_rows(
            vectors, np.int32(tok.lang_id("deu_Latn")), max_len=16, beam_size=3, n_best=True
        )
    )
    for i, text in enumerate(chosen):
        live = [h for h in hyps[3 * i : 3 * i + 3] if h.strip()]
        dist = [np.sum((loaded.encode([h], lang="deu_Latn")[0] - vectors[i]) ** 2) for h in live]
        assert text == live[int(np.argmin(dist))]
    assert loaded.max_decode_len == 510
    with pytest.raises(ValueError, match="unknown language 'english'"):
        loaded.decode(vectors, lang="english")
    with pytest.raises(ValueError, match="max_len must be an int in \\[1, 510\\]"):
        loaded.decode(vectors, max_len=511)
    with pytest.raises(ValueError, match="empty or whitespace-only"):
        loaded.encode(["ok", " "])
    decoder_only = SonarCodec(toy_model(None, dec_sd), tok)
    assert len(decoder_only.decode(vectors, max_len=8, beam_size=2)) == 4
    with pytest.raises(ValueError, match="rerank=True encodes the candidates.*no encoder"):
        decoder_only.decode(vectors, max_len=8, beam_size=2, rerank=True)
    # The codec of encoders/ has one language.
    sentence_file = tmp_path / "sentences.txt"
    sentence_file.write_text("\n".join(corpus_texts()), encoding="utf-8")
    plain = Codec(
        CodecModel(
            CodecModelConfig(vocab_size=512, d_model=16, num_heads=2, mlp_dim=32, concept_dim=8),
            nnx.Rngs(0),
        ),
        train_tokenizer(sentence_file, tmp_path / "plain.model", vocab_size=512),
    )
    plain.save(tmp_path / "plain")
    with pytest.raises(ValueError, match="SONAR codecs only"):
        encoders.load(tmp_path / "plain", source_lang="fra_Latn")
    # lcm encode / lcm decode with a language.
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    model_dir = str(tmp_path / "sonar")
    args = [str(lines), "-o", str(tmp_path / "v.npy"), "--model", model_dir, "--lang", "fra_Latn"]
    assert encode_main(args) == 0
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), french, atol=1e-6)
    args = [str(tmp_path / "v.npy"), "-o", str(tmp_path / "out.txt"), "--model", model_dir]
    assert decode_main([*args, "--max-len", "8", "--lang", "deu_Latn"]) == 0
    assert len((tmp_path / "out.txt").read_text().splitlines()) == 4
    assert encode_main([*args[:3], "--model", model_dir, "--lang", "xx"]) == 2
    # An encoder-only directory encodes and says why it cannot decode.
    enc_only = SonarCodec(toy_model(enc_sd, None), SonarTokenizer.from_nllb(nllb_file))
    with pytest.raises(ValueError, match="no decoder"):
        enc_only.decode(vectors)


def test_log_likelihood_matches_numpy_fairseq2(nllb_file: Path) -> None:
    """``Codec.log_likelihood`` (the likelihood LCM's objective) on SONAR: the decoder reads
    ``</s> __lang__ ids`` and is scored on ``ids </s>``, as a float64 NumPy decoder says."""
    dec_sd = random_state_dict("decoder", TOY_DEC, 6)
    codec = SonarCodec(toy_model(None, dec_sd), SonarTokenizer.from_nllb(nllb_file), batch_size=8)
    vectors = np.random.default_rng(1).normal(size=(len(SENTENCES), 32)).astype(np.float32)
    tok = codec.tokenizer
    for lang in ("eng_Latn", "deu_Latn"):
        codec.set_languages(target=lang)
        got = codec.log_likelihood(vectors, SENTENCES, max_len=12)  # cut: not always to EOS
        assert codec.decoder_prefix == (EOS_IDX, tok.lang_id(lang))
        for i, ids in enumerate(tok.encode(SENTENCES)):
            targets = [*ids, EOS_IDX][:12]
            inputs = np.array([[EOS_IDX, tok.lang_id(lang), *targets[:-1]]])
            logits = np_decoder_logits(dec_sd, inputs, vectors[i : i + 1], TOY_DEC)[0, 1:]
            logp = (
                logits
                - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))[:, None]
                - logits.max(-1, keepdims=True)
            )
            want = sum(logp[t, token] for t, token in enumerate(targets))
            np.testing.assert_allclose(got[i], want, rtol=1e-4)


def test_convert_cli_writes_a_directory_encoders_load_opens(
    nllb_file: Path, tmp_path: Path, capsys
) -> None:
    torch = pytest.importorskip("torch")
    enc_sd, dec_sd = (
        random_state_dict("encoder", TOY_ENC, 7),
        random_state_dict("decoder", TOY_DEC, 8),
    )
    torch.save({"model": {k: torch.from_numpy(v) for k, v in enc_sd.items()}}, tmp_path / "enc.pt")
    legacy = {k: torch.from_numpy(v) for k, v in to_legacy(dec_sd, "decoder").items()}
    torch.save({"model": {"state_dict": legacy}}, tmp_path / "dec.pt")
    out = tmp_path / "out"
    args = [
        str(tmp_path / "enc.pt"),
        str(tmp_path / "dec.pt"),
        str(out),
        "--tokenizer",
        str(nllb_file),
    ]
    assert convert_main(args) == 0
    assert "encoder toy + decoder toy (D=32)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "card.md",
        "config.yaml",
        "tokenizer.model",
        "weights.npz",
    ]
    codec = encoders.load(out)
    expected = SonarCodec(toy_model(enc_sd, dec_sd), SonarTokenizer.from_nllb(nllb_file))
    np.testing.assert_allclose(codec.encode(SENTENCES), expected.encode(SENTENCES), atol=1e-6)
    assert codec.decode(codec.encode(SENTENCES), max_len=8) == expected.decode(
        expected.encode(SENTENCES), max_len=8
    )
    assert "sha256" in (out / "card.md").read_text()
    # Errors: exit status 2 and a message naming the problem.
    assert convert_main([str(tmp_path / "nope.pt"), str(out), "--tokenizer", str(nllb_file)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert (
        convert_main(
            [
                str(tmp_path / "enc.pt"),
                str(tmp_path / "enc.pt"),
                str(out),
                "--tokenizer",
                str(nllb_file),
            ]
        )
        == 2
    )
    assert "two encoder checkpoints" in capsys.readouterr().err
    torch.save(
        {
            "model": {
                k: torch.from_numpy(v)
                for k, v in random_state_dict("encoder", ENCODER_ARCHS["toy"]).items()
            }
        },
        tmp_path / "e2.pt",
    )
    small_vocab = tmp_path / "small.model"
    small_vocab.write_bytes(nllb_like_model())
    assert (
        convert_main(
            [
                str(tmp_path / "e2.pt"),
                str(out),
                "--tokenizer",
                str(small_vocab),
                "--default-lang",
                "xxx_Latn",
            ]
        )
        == 2
    )
    assert "default_lang 'xxx_Latn'" in capsys.readouterr().err


def test_tiny_sonar_lcm_config_trains_on_embedded_shards(nllb_file: Path, tmp_path: Path) -> None:
    """A SONAR user's pipeline: shards -> SONAR vectors (D=1024) -> normalizer -> tiny LCM.

    The codec is SONAR-shaped (d 1024, the tokenizer's vocabulary) with random weights and
    one small layer, so that embedding stays fast.
    """
    from lcm.cli import main as lcm_main

    enc = SonarTransformerConfig("custom", 1024, 1, 16, 64, TOY_ENC.vocab_size)
    model = SonarModel(SonarCodecConfig(encoder=enc), nnx.Rngs(0))
    SonarCodec(model, SonarTokenizer.from_nllb(nllb_file), batch_size=64).save(tmp_path / "sonar")
    docs = tmp_path / "docs.jsonl"
    with docs.open("w", encoding="utf-8") as f:
        paragraphs = corpus_texts()
        for i in range(40):
            record = {
                "id": str(i),
                "title": f"doc {i}",
                "paragraphs": paragraphs[3 * i : 3 * i + 3],
            }
            f.write(json.dumps(record) + "\n")
    shards, concepts = tmp_path / "shards", tmp_path / "concepts"
    # Short sentences: few length buckets, so few encoder compilations.
    args = [str(docs), "--out", str(shards), "--max-chars", "60", "--no-progress"]
    assert lcm_main(["data", "shards", *args]) == 0
    args = [str(shards), "--codec", str(tmp_path / "sonar"), "--out", str(concepts)]
    assert lcm_main(["data", "embed", *args, "--no-progress"]) == 0
    normalizer = concepts / "normalizer.npz"
    assert lcm_main(["data", "fit-normalizer", str(concepts), "--out", str(normalizer)]) == 0
    assert np.load(concepts / "eot.npy").shape == (1024,)
    run = tmp_path / "run"
    overrides = [f"data.shards={concepts}", f"data.normalizer={normalizer}", f"run_dir={run}"]
    config = str(REPO / "configs/lcm/sonar_base_lcm_tiny.yaml")
    assert lcm_main(["train", config, *overrides, "steps=3", "log_every=1", "--no-progress"]) == 0
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and np.all(np.isfinite(losses))


# ---------------------------------------------------------------- against the real SONAR


def sonar_python() -> str | None:
    """The reference venv's python, if one with sonar-space and fairseq2 exists."""
    candidates = [os.environ.get("LCM_SONAR_PYTHON", "")]
    candidates += [
        str(REPO / ".venv-sonar/bin/python"),
        os.path.expanduser("~/venvs/sonar/bin/python"),
    ]
    for python in filter(None, candidates):
        if Path(python).is_file():
            check = subprocess.run(
                [python, str(REPO / "tools/sonar_reference.py"), "--check"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if check.returncode == 0:
                return python
    return None


@pytest.fixture(scope="module")
def reference_python() -> str:
    pytest.importorskip("torch")  # the converter reads .pt files
    python = sonar_python()
    if python is None:
        pytest.skip("no SONAR reference venv (tools/setup_sonar_venv.sh; LCM_SONAR_PYTHON)")
    return python


def run_reference(python: str, out: Path, inputs: dict, *extra: str) -> dict[str, np.ndarray]:
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "inputs.npz", **inputs)
    cmd = [
        python,
        str(REPO / "tools/sonar_reference.py"),
        str(out),
        "--inputs",
        str(out / "inputs.npz"),
    ]
    done = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((out / "info.json").read_text())
    return {**dict(np.load(out / "reference.npz")), "info": info}


def test_parity_with_fairseq2_small_encoder_and_toy_decoder(
    reference_python: str, tmp_path: Path
) -> None:
    from encoders.sonar.convert import load_checkpoint

    rng = np.random.default_rng(0)
    lens = np.array([514, 40, 17, 9, 3, 28])  # 514: all of SONAR's positions
    enc_tokens = np.zeros((len(lens), lens.max()), np.int64)
    for i, n in enumerate(lens):
        enc_tokens[i, 0] = 32005 - 100 + i  # a language tag's place
        enc_tokens[i, 1 : n - 1] = rng.integers(4, 31800, n - 2)
        enc_tokens[i, n - 1] = EOS_IDX
    vectors = rng.normal(size=(12, 32)).astype(np.float32)
    inputs = {
        "enc_tokens": enc_tokens,
        "enc_lens": lens,
        "dec_vectors": vectors,
        "lang": 865,
        "max_len": 60,
    }
    options = ["--encoder-arch", "small", "--decoder-arch", "toy", "--eos-boost", "5"]
    ref = run_reference(reference_python, tmp_path, inputs, *options, "--no-legacy")
    assert ref["info"]["sonar_legacy_decoder_converter_agrees"]  # our legacy layout is SONAR's

    assert ref["info"]["encoder_max_seq_len"] == 514 and ref["info"]["encoder_sin_offset"] == 2
    # float32 sines of arguments up to ~514 rad carry about 3e-5 of rounding: the reference
    # venv built on 2026-12-03 gave tables 3.05e-5 apart at most (atol 1e-5 failed in CI).
    np.testing.assert_allclose(sinusoid_table(514, 1024, 2), ref["positions"], atol=1e-4)
    kind, cfg, weights = convert_state_dict(load_checkpoint(tmp_path / "encoder.pt"))
    assert (kind, cfg) == ("encoder", ENCODER_ARCHS["small"])
    model_cfg = SonarCodecConfig(encoder=cfg)
    model = build_with_weights(lambda: SonarModel(model_cfg, nnx.Rngs(0)), weights)
    ours = np.asarray(jax.jit(lambda t: model.encode(t))(jnp.asarray(enc_tokens, jnp.int32)))
    diff = rel_diff(ours, ref["embeddings"])
    print(f"small encoder: max row-relative difference {diff:.2e}")
    assert diff < 1e-4

    kind, cfg, weights = convert_state_dict(load_checkpoint(tmp_path / "decoder.pt"))
    model_cfg = SonarCodecConfig(decoder=cfg)
    decoder = build_with_weights(lambda: SonarModel(model_cfg, nnx.Rngs(0)), weights).decoder
    greedy = np.asarray(sonar_greedy_search(decoder, jnp.asarray(vectors), 865, 60))
    beams = np.asarray(sonar_beam_search(decoder, jnp.asarray(vectors), 865, 60, 3))
    same_greedy, same_beam = np.mean(greedy == ref["beam1"]), np.mean(beams == ref["beam3"])
    print(f"toy decoder: tokens equal, greedy {same_greedy:.4f}, beam 3 {same_beam:.4f}")
    np.testing.assert_array_equal(greedy, ref["beam1"])
    np.testing.assert_array_equal(beams, ref["beam3"])
    assert len({int(np.argmax(r == EOS_IDX)) for r in greedy}) > 1  # sentences of several lengths


def test_end_to_end_toy_models_through_the_cli(
    reference_python: str, nllb_file: Path, tmp_path: Path
) -> None:
    tok = SonarTokenizer.from_nllb(nllb_file)
    rows = [[tok.lang_id("eng_Latn"), *ids, EOS_IDX] for ids in tok.encode(SENTENCES)]
    width = max(map(len, rows))
    enc_tokens = np.array([r + [0] * (width - len(r)) for r in rows])
    vectors = np.random.default_rng(2).normal(size=(5, 32)).astype(np.float32)
    inputs = {
        "enc_tokens": enc_tokens,
        "enc_lens": np.array([len(r) for r in rows]),
        "dec_vectors": vectors,
        "lang": tok.lang_id("fra_Latn"),
        "max_len": 150,
    }
    options = ["--encoder-arch", "toy", "--decoder-arch", "toy", "--eos-boost", "2"]
    ref = run_reference(
        reference_python, tmp_path / "ref", inputs, *options, "--beam-sizes", "1", "2"
    )
    dirs = []
    for enc, dec in (("encoder.pt", "decoder.pt"), ("encoder_legacy.pt", "decoder_legacy.pt")):
        dirs.append(tmp_path / f"model_{enc}")
        args = [str(tmp_path / "ref" / enc), str(tmp_path / "ref" / dec), str(dirs[-1])]
        assert convert_main([*args, "--tokenizer", str(nllb_file)]) == 0
    # The legacy fairseq checkpoints give the same model directory.
    with np.load(dirs[0] / "weights.npz") as a, np.load(dirs[1] / "weights.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    codec = encoders.load(dirs[0], target_lang="fra_Latn")
    diff = rel_diff(codec.encode(SENTENCES), ref["embeddings"])
    print(f"toy encoder from text: max row-relative difference {diff:.2e}")
    assert diff < 1e-4
    for k in (1, 2):
        want = [list(r[: list(r).index(EOS_IDX)]) for r in ref[f"beam{k}"]]
        assert codec.decode(vectors, beam_size=k, max_len=150) == tok.decode(want), f"beam {k}"
    # Some sentences end on their own, others run into the forced EOS at position 150.
    ends = {int(np.argmax(r == EOS_IDX)) for r in ref["beam1"]}
    assert 149 in ends and len(ends) > 1

"""SONAR's text encoder and decoder in Flax NNX, numerically equal to fairseq2's.

SONAR (Duquenne et al., 2023; github.com/facebookresearch/SONAR) maps a sentence in any of 202
languages to one 1024-dim vector and back. This module rebuilds its text models exactly as
``sonar.models.sonar_text.factory`` builds them with fairseq2 (read from sonar-space 0.5.0 and
fairseq2 0.8.1), so that converted SONAR weights (``lcm convert-sonar``, see
:mod:`encoders.sonar_convert`) give SONAR's vectors and sentences with no fairseq2 at run time:

* Encoder (``SonarTextEncoderFactory``): token embedding scaled by ``sqrt(d)`` plus fixed
  sinusoidal positions; pre-LN Transformer layers (LayerNorm eps 1e-5 with bias; multi-head
  attention with biased q/k/v/output projections; ReLU feed-forward with biases); a final
  LayerNorm; masked mean pooling, ``sum(states) * 1 / (length + 1e-7)``.
* Decoder (``SonarTextDecoderFactory``): the same frontend; pre-LN layers of causal
  self-attention, encoder-decoder attention to the sentence vector as a memory of length 1,
  and a ReLU feed-forward; a final LayerNorm; an output projection tied to the embedding.
* Positions (fairseq2 ``SinusoidalPositionEncoder``): position ``p`` gets
  ``[sin(s * w), cos(s * w)]`` with ``w_i = exp(-i * ln(10000) / (d/2 - 1))`` and
  ``s = p + 1 + pad_idx``: SONAR passes fairseq's pad index 1 as ``_legacy_pad_idx``, so the
  first position is step 2. The encoder config (``_from_fairseq``) also grows its length by
  ``pad_idx + 1``: 514 positions; the decoder has 512.
* Tokens (fairseq2's NLLB tokenizer, :class:`SonarTokenizer`): the NLLB SentencePiece model
  with one ``__lang__`` control symbol per language, three data tags, and ``<pad>`` inserted
  at id 0, so PAD 0, UNK 1, BOS 2, EOS 3. A sentence is encoded as ``__lang__ pieces </s>``
  (truncated to the encoder's 514 positions); the decoder starts from ``</s> __lang__`` and
  generates until ``</s>``, never PAD, with EOS forced at its last position (fairseq2's
  ``BeamSearchSeq2SeqGenerator``; beam size 1 is greedy decoding).

Encoder-decoder attention over one memory vector is computed as ``output(value(v))``: a
softmax over a single key is exactly 1, so that sublayer's query and key projections and its
layer norm cannot change the output (the converter checks them and leaves them out).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import sentencepiece as spm
from flax import nnx

from encoders.codec import (
    CARD_FILE,
    CONFIG_FILE,
    DECODE_CACHE_BYTES,
    LENGTH_BUCKETS,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    Codec,
    EncodePrecision,
    _encode_impl,
    _ladder,
    _log_likelihood_impl,
    beam_call_rows,
    check_cache_fits,
    check_sentences,
    closest_candidates,
)
from lcm.config import ConfigError, from_dict, read_yaml
from lcm.io import write_bytes_atomic
from lcm.nn import (
    KVCache,
    LayerNorm,
    TokenEmbedding,
    cached_attention,
    matmul,
)
from lcm.nn.weights import build_with_weights, load_weights

logger = logging.getLogger(__name__)

# Token ids of fairseq2's NLLB tokenizer (its SentencePiece model with <pad> inserted at 0).
PAD_IDX, UNK_IDX, BOS_IDX, EOS_IDX = 0, 1, 2, 3
# Control symbols fairseq2 adds after the language tags ("internal, not relevant for eval").
DATA_TAGS = ("<MINED_DATA>", "<MMT_BT_DATA>", "<SMT_BT_DATA>")
# fairseq's pad index: SONAR's configs keep it (vocab_info.pad_idx=1) and it sets the offset
# of the sinusoidal positions (1 + pad_idx).
LEGACY_PAD_IDX = 1
DEFAULT_LANG = "eng_Latn"
# Most bytes of KV cache one decode call holds (SONAR basic: ~100 MB per sentence and beam at
# the default 510 tokens); larger batches are split into calls of fewer sentences.
_LN_EPS = 1e-5

# The languages of SONAR's text models, in the order of its asset cards
# (text_sonar_basic_encoder.yaml): the i-th gets token id (NLLB pieces) + 1 + i.
# fmt: off
SONAR_LANGS: tuple[str, ...] = (
    "ace_Arab", "ace_Latn", "acm_Arab", "acq_Arab", "aeb_Arab", "afr_Latn", "ajp_Arab", "aka_Latn",
    "amh_Ethi", "apc_Arab", "arb_Arab", "ars_Arab", "ary_Arab", "arz_Arab", "asm_Beng", "ast_Latn",
    "awa_Deva", "ayr_Latn", "azb_Arab", "azj_Latn", "bak_Cyrl", "bam_Latn", "ban_Latn", "bel_Cyrl",
    "bem_Latn", "ben_Beng", "bho_Deva", "bjn_Arab", "bjn_Latn", "bod_Tibt", "bos_Latn", "bug_Latn",
    "bul_Cyrl", "cat_Latn", "ceb_Latn", "ces_Latn", "cjk_Latn", "ckb_Arab", "crh_Latn", "cym_Latn",
    "dan_Latn", "deu_Latn", "dik_Latn", "dyu_Latn", "dzo_Tibt", "ell_Grek", "eng_Latn", "epo_Latn",
    "est_Latn", "eus_Latn", "ewe_Latn", "fao_Latn", "pes_Arab", "fij_Latn", "fin_Latn", "fon_Latn",
    "fra_Latn", "fur_Latn", "fuv_Latn", "gla_Latn", "gle_Latn", "glg_Latn", "grn_Latn", "guj_Gujr",
    "hat_Latn", "hau_Latn", "heb_Hebr", "hin_Deva", "hne_Deva", "hrv_Latn", "hun_Latn", "hye_Armn",
    "ibo_Latn", "ilo_Latn", "ind_Latn", "isl_Latn", "ita_Latn", "jav_Latn", "jpn_Jpan", "kab_Latn",
    "kac_Latn", "kam_Latn", "kan_Knda", "kas_Arab", "kas_Deva", "kat_Geor", "knc_Arab", "knc_Latn",
    "kaz_Cyrl", "kbp_Latn", "kea_Latn", "khm_Khmr", "kik_Latn", "kin_Latn", "kir_Cyrl", "kmb_Latn",
    "kon_Latn", "kor_Hang", "kmr_Latn", "lao_Laoo", "lvs_Latn", "lij_Latn", "lim_Latn", "lin_Latn",
    "lit_Latn", "lmo_Latn", "ltg_Latn", "ltz_Latn", "lua_Latn", "lug_Latn", "luo_Latn", "lus_Latn",
    "mag_Deva", "mai_Deva", "mal_Mlym", "mar_Deva", "min_Latn", "mkd_Cyrl", "plt_Latn", "mlt_Latn",
    "mni_Beng", "khk_Cyrl", "mos_Latn", "mri_Latn", "zsm_Latn", "mya_Mymr", "nld_Latn", "nno_Latn",
    "nob_Latn", "npi_Deva", "nso_Latn", "nus_Latn", "nya_Latn", "oci_Latn", "gaz_Latn", "ory_Orya",
    "pag_Latn", "pan_Guru", "pap_Latn", "pol_Latn", "por_Latn", "prs_Arab", "pbt_Arab", "quy_Latn",
    "ron_Latn", "run_Latn", "rus_Cyrl", "sag_Latn", "san_Deva", "sat_Beng", "scn_Latn", "shn_Mymr",
    "sin_Sinh", "slk_Latn", "slv_Latn", "smo_Latn", "sna_Latn", "snd_Arab", "som_Latn", "sot_Latn",
    "spa_Latn", "als_Latn", "srd_Latn", "srp_Cyrl", "ssw_Latn", "sun_Latn", "swe_Latn", "swh_Latn",
    "szl_Latn", "tam_Taml", "tat_Cyrl", "tel_Telu", "tgk_Cyrl", "tgl_Latn", "tha_Thai", "tir_Ethi",
    "taq_Latn", "taq_Tfng", "tpi_Latn", "tsn_Latn", "tso_Latn", "tuk_Latn", "tum_Latn", "tur_Latn",
    "twi_Latn", "tzm_Tfng", "uig_Arab", "ukr_Cyrl", "umb_Latn", "urd_Arab", "uzn_Latn", "vec_Latn",
    "vie_Latn", "war_Latn", "wol_Latn", "xho_Latn", "ydd_Hebr", "yor_Latn", "yue_Hant", "zho_Hans",
    "zho_Hant", "zul_Latn",
)
# fmt: on


@dataclasses.dataclass(frozen=True)
class SonarTransformerConfig:
    """The shape of one SONAR text Transformer (encoder or decoder).

    Attributes:
        arch: The SONAR arch it follows ("basic", "small", "toy"), for the record.
        model_dim: Width d; the encoder's d is D, the size of a sentence vector.
        num_layers: Transformer layers.
        num_heads: Attention heads (d must be divisible by it).
        ffn_inner_dim: Hidden width of the ReLU feed-forward networks.
        vocab_size: Rows of the token embedding (the tokenizer's size).
        max_seq_len: Positions of the sinusoidal table: the longest token sequence.
        pos_offset: Sinusoid step of position 0: ``1 + pad_idx`` (2) for SONAR's models,
            which keep fairseq's pad index; 0 without that legacy offset.
    """

    arch: str = "basic"
    model_dim: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    ffn_inner_dim: int = 8192
    vocab_size: int = 256206
    max_seq_len: int = 514
    pos_offset: int = 1 + LEGACY_PAD_IDX

    def __post_init__(self) -> None:
        for name in ("model_dim", "num_layers", "num_heads", "ffn_inner_dim", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.model_dim % self.num_heads:
            raise ValueError(
                f"model_dim {self.model_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.model_dim % 2 or self.model_dim < 4:
            raise ValueError(f"model_dim must be even and >= 4 (sinusoids), got {self.model_dim}")
        if self.vocab_size <= EOS_IDX:
            raise ValueError(f"vocab_size must exceed {EOS_IDX}, got {self.vocab_size}")
        if self.pos_offset < 0:
            raise ValueError(f"pos_offset must be >= 0, got {self.pos_offset}")


def _arch(
    name: str, d: int, layers: int, heads: int, ffn: int, vocab: int, positions: int
) -> SonarTransformerConfig:
    return SonarTransformerConfig(name, d, layers, heads, ffn, vocab, positions)


# sonar/models/sonar_text/config.py: the encoder's max_seq_len 512 grows by pad_idx + 1 = 2
# (_from_fairseq); "small" is "basic" with 6 layers, FFN 4096 and 32005 tokens.
ENCODER_ARCHS: dict[str, SonarTransformerConfig] = {
    "basic": _arch("basic", 1024, 24, 16, 8192, 256206, 514),
    "small": _arch("small", 1024, 6, 16, 4096, 32005, 514),
    # Not a SONAR arch (SONAR registers no toy encoder): the decoder toy's sizes in the
    # encoder's layout, for fast tests of the whole pipeline.
    "toy": _arch("toy", 32, 2, 4, 128, 1024, 514),
}
DECODER_ARCHS: dict[str, SonarTransformerConfig] = {
    "basic": _arch("basic", 1024, 24, 16, 8192, 256206, 512),
    "small": _arch("small", 1024, 6, 16, 4096, 32005, 512),
    "toy": _arch("toy", 32, 2, 4, 128, 1024, 512),
}


@dataclasses.dataclass(frozen=True)
class SonarCodecConfig:
    """A converted SONAR model: encoder and/or decoder, and the tokenizer's languages.

    Attributes:
        family: Always "sonar" (how ``encoders.load`` recognizes the directory).
        encoder: The text encoder, or None for a decoder-only directory.
        decoder: The text decoder, or None for an encoder-only directory.
        langs: Languages of the tokenizer, in token order (SONAR's 202 by default).
        default_lang: Language used when none is given.
    """

    family: Literal["sonar"] = "sonar"
    encoder: SonarTransformerConfig | None = None
    decoder: SonarTransformerConfig | None = None
    langs: tuple[str, ...] = SONAR_LANGS
    default_lang: str = DEFAULT_LANG

    def __post_init__(self) -> None:
        if self.encoder is None and self.decoder is None:
            raise ValueError("a SONAR codec needs an encoder, a decoder or both")
        if self.encoder is not None and self.decoder is not None:
            for name in ("model_dim", "vocab_size"):
                enc, dec = getattr(self.encoder, name), getattr(self.decoder, name)
                if enc != dec:
                    raise ValueError(f"encoder {name} {enc} differs from decoder {name} {dec}")
        if len(set(self.langs)) != len(self.langs):
            raise ValueError("langs holds a language twice")
        if self.default_lang not in self.langs:
            raise ValueError(f"default_lang {self.default_lang!r} is not in langs")

    @property
    def part(self) -> SonarTransformerConfig:
        """The encoder config, or the decoder's for a decoder-only model."""
        return self.encoder if self.encoder is not None else self.decoder  # type: ignore[return-value]

    @property
    def concept_dim(self) -> int:
        """D, the size of a sentence vector."""
        return self.part.model_dim

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return self.part.vocab_size

    @property
    def max_len(self) -> int:
        """Longest encoder input (special tokens included), or the decoder's positions."""
        return self.part.max_seq_len


@functools.cache
def sinusoid_table(num_positions: int, dim: int, offset: int) -> np.ndarray:
    """fairseq2's sinusoidal encodings of positions ``0 .. num_positions - 1``.

    Computed as ``SinusoidalPositionEncoder`` does, in float32: steps ``offset + p``,
    frequencies ``exp(i * -ln(10000) / (dim/2 - 1))``, sines then cosines.

    Args:
        num_positions: Rows.
        dim: Encoding size (even, >= 4).
        offset: Step of position 0 (``1 + pad_idx`` with the legacy offset).

    Returns:
        [num_positions, dim] float32 (read-only).
    """
    num_sin = dim // 2
    exponents = np.arange(num_sin, dtype=np.float32) * np.float32(-math.log(10000.0))
    exponents = exponents / np.float32(num_sin - 1)
    # exp, sin and cos rounded from float64: within an ulp of torch's float32 kernels.
    freqs = np.exp(exponents.astype(np.float64)).astype(np.float32)
    steps = np.arange(offset, offset + num_positions, dtype=np.float32)
    angles = np.outer(steps, freqs).astype(np.float32).astype(np.float64)
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)
    table.flags.writeable = False
    return table


class SonarAttention(nnx.Module):
    """fairseq2's ``StandardMultiheadAttention``: biased q/k/v/output projections and
    ``softmax(q k^T / sqrt(head_dim)) v`` per head.

    Shapes: ``B`` batch, ``T`` queries, ``S`` keys, ``N`` heads, ``H`` head dim.

    Args:
        dim: Model width d.
        num_heads: N.
        dtype: Compute dtype.
        rngs: Initialization RNGs.
    """

    def __init__(self, dim: int, num_heads: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dtype = dtype
        dense_kw = {"dtype": dtype, "partition_bias": True, "rngs": rngs}
        self.q_proj = matmul.dense(dim, dim, ("embed", "heads"), **dense_kw)
        self.k_proj = matmul.dense(dim, dim, ("embed", "heads"), **dense_kw)
        self.v_proj = matmul.dense(dim, dim, ("embed", "heads"), **dense_kw)
        self.output_proj = matmul.dense(dim, dim, ("heads", "embed"), **dense_kw)

    def _heads(self, x: jax.Array) -> jax.Array:
        return x.reshape(*x.shape[:-1], self.num_heads, self.head_dim)

    def _out(self, attended: jax.Array) -> jax.Array:
        return self.output_proj(attended.reshape(*attended.shape[:-2], -1))

    def __call__(
        self, x: jax.Array, *, mask: jax.Array | None = None, causal: bool = False
    ) -> jax.Array:
        """Self-attention over ``x`` [B, T, d]; ``mask`` [B, T] marks real keys (True).

        Returns:
            [B, T, d].
        """
        q, k, v = (self._heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = jax.nn.dot_product_attention(q, k, v, mask=attn_mask, is_causal=causal)
        return self._out(out)

    def init_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty KV cache for ``max_len`` positions."""
        return KVCache.zeros(batch, max_len, self.num_heads, self.head_dim, self.dtype)

    def decode(self, x: jax.Array, cache: KVCache, index: jax.Array) -> tuple[jax.Array, KVCache]:
        """Causal attention of new positions ``index .. index + T - 1`` to the cache.

        Args:
            x: [B, T, d] inputs at the new positions.
            cache: Keys and values of the positions before ``index``.
            index: Position of ``x[:, 0]`` (scalar int32).

        Returns:
            [B, T, d] and the cache holding the new keys and values too.
        """
        q, k, v = (self._heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        cache = cache.write(k, v, index)
        positions = index + jnp.arange(x.shape[1])
        visible = jnp.arange(cache.max_len)[None, :] <= positions[:, None]  # [T, S]
        out = cached_attention(q, cache, visible[None, None])
        return self._out(out), cache


class SonarMemoryAttention(nnx.Module):
    """Encoder-decoder attention to a memory of one vector: ``output_proj(v_proj(m))``.

    The softmax over a single key is exactly 1 at every query, so this equals fairseq2's
    attention whatever its query and key projections hold (they are not kept).

    Args:
        dim: Model width d (the memory is d-dim too).
        dtype: Compute dtype.
        rngs: Initialization RNGs.
    """

    def __init__(self, dim: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        dense_kw = {"dtype": dtype, "partition_bias": True, "rngs": rngs}
        self.v_proj = matmul.dense(dim, dim, ("concept", "heads"), **dense_kw)
        self.output_proj = matmul.dense(dim, dim, ("heads", "embed"), **dense_kw)

    def __call__(self, memory: jax.Array) -> jax.Array:
        """``memory`` [B, d] -> the sublayer output at every query position, [B, 1, d]."""
        return self.output_proj(self.v_proj(memory))[:, None, :]


class SonarFeedForward(nnx.Module):
    """fairseq2's ``StandardFeedForwardNetwork`` with ReLU and biases: [..., d] -> [..., d]."""

    def __init__(self, dim: int, inner_dim: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        dense_kw = {"dtype": dtype, "partition_bias": True, "rngs": rngs}
        self.inner_proj = matmul.dense(dim, inner_dim, ("embed", "mlp"), **dense_kw)
        self.output_proj = matmul.dense(inner_dim, dim, ("mlp", "embed"), **dense_kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[..., d] -> [..., d]."""
        return self.output_proj(jax.nn.relu(self.inner_proj(x)))


class SonarEncoderLayer(nnx.Module):
    """Pre-LN encoder layer: ``x + attn(ln(x))``, then ``x + ffn(ln(x))``."""

    def __init__(self, cfg: SonarTransformerConfig, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        d = cfg.model_dim
        self.self_attn_layer_norm = LayerNorm(d, eps=_LN_EPS, dtype=dtype)
        self.self_attn = SonarAttention(d, cfg.num_heads, dtype=dtype, rngs=rngs)
        self.ffn_layer_norm = LayerNorm(d, eps=_LN_EPS, dtype=dtype)
        self.ffn = SonarFeedForward(d, cfg.ffn_inner_dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        """``x`` [B, T, d], ``mask`` [B, T] (True = real token) -> [B, T, d]."""
        x = x + self.self_attn(self.self_attn_layer_norm(x), mask=mask)
        return x + self.ffn(self.ffn_layer_norm(x))


class SonarDecoderLayer(nnx.Module):
    """Pre-LN decoder layer: causal self-attention, attention to the sentence vector, FFN."""

    def __init__(self, cfg: SonarTransformerConfig, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        d = cfg.model_dim
        self.self_attn_layer_norm = LayerNorm(d, eps=_LN_EPS, dtype=dtype)
        self.self_attn = SonarAttention(d, cfg.num_heads, dtype=dtype, rngs=rngs)
        self.encoder_decoder_attn = SonarMemoryAttention(d, dtype=dtype, rngs=rngs)
        self.ffn_layer_norm = LayerNorm(d, eps=_LN_EPS, dtype=dtype)
        self.ffn = SonarFeedForward(d, cfg.ffn_inner_dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, memory: jax.Array) -> jax.Array:
        """``x`` [B, T, d] (positions 0..T-1), ``memory`` [B, 1, d] from
        :meth:`SonarTextDecoder.project_memory` -> [B, T, d]."""
        x = x + self.self_attn(self.self_attn_layer_norm(x), causal=True)
        x = x + memory
        return x + self.ffn(self.ffn_layer_norm(x))

    def decode(
        self, x: jax.Array, memory: jax.Array, cache: KVCache, index: jax.Array
    ) -> tuple[jax.Array, KVCache]:
        """The layer at positions ``index ..`` with a KV cache; returns [B, T, d] and it."""
        h, cache = self.self_attn.decode(self.self_attn_layer_norm(x), cache, index)
        x = x + h
        x = x + memory
        return x + self.ffn(self.ffn_layer_norm(x)), cache


def _positions(cfg: SonarTransformerConfig, positions: jax.Array) -> jax.Array:
    """Sinusoidal encodings of ``positions`` [...] -> [..., d] float32."""
    table = sinusoid_table(cfg.max_seq_len, cfg.model_dim, cfg.pos_offset)
    return jnp.take(jnp.asarray(table), positions, axis=0)


class SonarTextEncoder(nnx.Module):
    """SONAR's text encoder: token ids -> one d-dim sentence vector.

    Args:
        cfg: Its shape.
        dtype: Compute dtype (parameters are float32).
        rngs: Initialization RNGs.
    """

    def __init__(
        self, cfg: SonarTransformerConfig, *, dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs
    ):
        self.config = cfg
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.model_dim, dtype=dtype, rngs=rngs)
        self.layers = nnx.List(
            [SonarEncoderLayer(cfg, dtype=dtype, rngs=rngs) for _ in range(cfg.num_layers)]
        )
        self.layer_norm = LayerNorm(cfg.model_dim, eps=_LN_EPS, dtype=dtype)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """Encode padded sentences.

        Args:
            tokens: [batch, seq] int ids, ``__lang__ pieces </s>`` then PAD (0); seq at most
                ``max_seq_len``. A row's vector does not depend on seq or on other rows.

        Returns:
            [batch, model_dim] float32 sentence vectors.

        Raises:
            ValueError: If seq exceeds the position table.
        """
        seq = tokens.shape[1]
        if seq > self.config.max_seq_len:
            raise ValueError(f"{seq} tokens exceed the encoder's {self.config.max_seq_len}")
        mask = tokens != PAD_IDX
        x = self.embed(tokens)
        x = (x.astype(jnp.float32) + _positions(self.config, jnp.arange(seq))).astype(x.dtype)
        for layer in self.layers:
            x = layer(x, mask)
        x = self.layer_norm(x).astype(jnp.float32)
        weights = mask.astype(jnp.float32)
        total = jnp.sum(x * weights[..., None], axis=1)
        return total * (1.0 / (jnp.sum(weights, axis=1) + 1e-7))[:, None]


class SonarTextDecoder(nnx.Module):
    """SONAR's text decoder: a sentence vector -> next-token logits.

    Args:
        cfg: Its shape.
        dtype: Compute dtype (parameters are float32).
        rngs: Initialization RNGs.
    """

    def __init__(
        self, cfg: SonarTransformerConfig, *, dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs
    ):
        self.config = cfg
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.model_dim, dtype=dtype, rngs=rngs)
        self.layers = nnx.List(
            [SonarDecoderLayer(cfg, dtype=dtype, rngs=rngs) for _ in range(cfg.num_layers)]
        )
        self.layer_norm = LayerNorm(cfg.model_dim, eps=_LN_EPS, dtype=dtype)

    def _inputs(self, tokens: jax.Array, positions: jax.Array) -> jax.Array:
        x = self.embed(tokens)
        return (x.astype(jnp.float32) + _positions(self.config, positions)).astype(x.dtype)

    def project_memory(self, concepts: jax.Array) -> tuple[jax.Array, ...]:
        """Per-layer encoder-decoder attention outputs of ``concepts`` [B, d]: [B, 1, d] each."""
        return tuple(layer.encoder_decoder_attn(concepts) for layer in self.layers)

    def __call__(self, tokens: jax.Array, concepts: jax.Array) -> jax.Array:
        """Teacher-forced pass.

        Args:
            tokens: [batch, seq] decoder input ids (``</s> __lang__ ...``), positions 0..seq-1.
            concepts: [batch, model_dim] sentence vectors.

        Returns:
            [batch, seq, vocab] float32 next-token logits.
        """
        x = self._inputs(tokens, jnp.arange(tokens.shape[1]))
        for layer, memory in zip(self.layers, self.project_memory(concepts)):
            x = layer(x, memory)
        return self.embed.attend(self.layer_norm(x))

    def init_cache(self, batch: int, max_len: int) -> tuple[KVCache, ...]:
        """Empty per-layer KV caches for ``max_len`` positions."""
        return tuple(layer.self_attn.init_cache(batch, max_len) for layer in self.layers)

    def decode_step(
        self,
        tokens: jax.Array,
        memories: tuple[jax.Array, ...],
        caches: tuple[KVCache, ...],
        index: jax.Array,
    ) -> tuple[jax.Array, tuple[KVCache, ...]]:
        """Incremental pass over new tokens at positions ``index ..``.

        Args:
            tokens: [batch, T] new ids.
            memories: From :meth:`project_memory`.
            caches: From :meth:`init_cache` or the previous step.
            index: Position of ``tokens[:, 0]`` (scalar int32).

        Returns:
            [batch, T, vocab] float32 logits and the updated caches.
        """
        x = self._inputs(tokens, index + jnp.arange(tokens.shape[1]))
        new_caches = []
        for layer, memory, cache in zip(self.layers, memories, caches):
            x, cache = layer.decode(x, memory, cache, index)
            new_caches.append(cache)
        return self.embed.attend(self.layer_norm(x)), tuple(new_caches)


class SonarModel(nnx.Module):
    """A SONAR text encoder and/or decoder (what a converted directory holds).

    Args:
        cfg: The config (``encoder`` or ``decoder`` may be None).
        rngs: Initialization RNGs (converted weights replace the values).
    """

    def __init__(self, cfg: SonarCodecConfig, rngs: nnx.Rngs):
        self.config = cfg
        self.encoder = None if cfg.encoder is None else SonarTextEncoder(cfg.encoder, rngs=rngs)
        self.decoder = None if cfg.decoder is None else SonarTextDecoder(cfg.decoder, rngs=rngs)

    def encode(self, tokens: jax.Array) -> jax.Array:
        """tokens [batch, seq] -> [batch, D] float32 (see :meth:`SonarTextEncoder.__call__`)."""
        if self.encoder is None:
            raise ValueError("this SONAR model has no encoder")
        return self.encoder(tokens)


def _prefill(
    decoder: SonarTextDecoder, concepts: jax.Array, lang: jax.Array, cache_len: int
) -> tuple[tuple[jax.Array, ...], tuple[KVCache, ...], jax.Array]:
    """Run the prompt ``</s> __lang__``; returns memories, caches and its logits [B, 2, V]."""
    batch = concepts.shape[0]
    memories = decoder.project_memory(concepts)
    caches = decoder.init_cache(batch, cache_len)
    prompt = jnp.stack(
        [
            jnp.full((batch,), EOS_IDX, jnp.int32),
            jnp.broadcast_to(lang, (batch,)).astype(jnp.int32),
        ],
        axis=1,
    )
    logits, caches = decoder.decode_step(prompt, memories, caches, jnp.int32(0))
    return memories, caches, logits


def _step_lprobs(logits: jax.Array, t: jax.Array, max_len: int) -> jax.Array:
    """fairseq2's step scores: log-softmax, PAD never, only EOS at the last step."""
    lprobs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    normal = lprobs.at[:, PAD_IDX].set(-jnp.inf)
    eos_only = jnp.full_like(lprobs, -jnp.inf).at[:, EOS_IDX].set(lprobs[:, EOS_IDX])
    return jnp.where(t == max_len - 1, eos_only, normal)


def _check_positions(decoder: SonarTextDecoder, max_len: int) -> None:
    if max_len + 2 > decoder.config.max_seq_len:
        raise ValueError(
            f"max_len {max_len} + the 2 prompt tokens exceed the decoder's "
            f"{decoder.config.max_seq_len} positions"
        )


def sonar_greedy_search(
    decoder: SonarTextDecoder, concepts: jax.Array, lang: jax.Array, max_len: int
) -> jax.Array:
    """Greedy decoding, as fairseq2's beam search with beam size 1.

    Args:
        decoder: The decoder.
        concepts: [batch, D] sentence vectors.
        lang: Scalar int, the target ``__lang__`` token id.
        max_len: Most tokens to generate, EOS included (EOS is forced at the last one).

    Returns:
        [batch, max_len] int32: ids, EOS, then PAD.
    """
    _check_positions(decoder, max_len)
    batch = concepts.shape[0]
    memories, caches, logits = _prefill(decoder, concepts, lang, max_len + 2)

    def cond(carry):
        t, _, _, _, done = carry
        return (t < max_len) & ~jnp.all(done)

    def body(carry):
        t, out, logits, caches, done = carry
        token = jnp.argmax(_step_lprobs(logits, t, max_len), axis=-1).astype(jnp.int32)
        token = jnp.where(done, PAD_IDX, token)
        out = jax.lax.dynamic_update_slice(out, token[:, None], (0, t))
        next_logits, caches = decoder.decode_step(token[:, None], memories, caches, t + 2)
        return t + 1, out, next_logits[:, -1], caches, done | (token == EOS_IDX)

    carry = (
        jnp.int32(0),
        jnp.full((batch, max_len), PAD_IDX, jnp.int32),
        logits[:, -1],
        caches,
        jnp.zeros((batch,), bool),
    )
    return jax.lax.while_loop(cond, body, carry)[1]


def sonar_beam_search(
    decoder: SonarTextDecoder,
    concepts: jax.Array,
    lang: jax.Array,
    max_len: int,
    beam_size: int,
    len_penalty: float = 1.0,
    n_best: bool = False,
) -> jax.Array:
    """fairseq2's ``BeamSearchSeq2SeqGenerator`` (``StandardBeamSearchAlgorithm``).

    Each step takes the best ``2K`` continuations of the ``K`` beams; those among the best
    ``K`` that end in EOS become hypotheses (score: total log-probability, the prompt's
    ``log p(__lang__ | </s>)`` included, divided by ``(prompt + generated - 1) **
    len_penalty``), the best ``K`` others go on. A sentence is done at ``K`` hypotheses;
    the best-scoring one (the earliest on ties) is returned.

    Args:
        decoder: The decoder.
        concepts: [batch, D] sentence vectors.
        lang: Scalar int, the target ``__lang__`` token id.
        max_len: Most tokens to generate, EOS included (EOS is forced at the last one).
        beam_size: K.
        len_penalty: Length-normalization exponent.
        n_best: Return all ``K`` hypotheses, best first, instead of the best one.

    Returns:
        [batch, max_len] int32: ids, EOS, then PAD; with ``n_best`` [batch, K, max_len].
    """
    _check_positions(decoder, max_len)
    b, k = concepts.shape[0], beam_size
    rows = b * k
    memories, caches, logits = _prefill(decoder, jnp.repeat(concepts, k, axis=0), lang, max_len + 2)
    vocab = logits.shape[-1]
    prompt_lprob = jax.nn.log_softmax(logits[:, 0].astype(jnp.float32), axis=-1)
    prompt_score = prompt_lprob[:, jnp.asarray(lang, jnp.int32)].reshape(b, k)
    # Only the first beam is live at the start (fairseq2 starts with one sequence per prompt).
    scores = jnp.where(jnp.arange(k) == 0, prompt_score, -jnp.inf)
    batch_idx = jnp.broadcast_to(jnp.arange(b)[:, None], (b, k))
    positions = jnp.arange(max_len)

    def cond(carry):
        t, *_, fin_count = carry
        return (t < max_len) & jnp.any(fin_count < k)

    def body(carry):
        t, seqs, scores, logits, caches, fin_seqs, fin_scores, fin_count = carry
        lprobs = _step_lprobs(logits, t, max_len).reshape(b, k, vocab)
        cand = (scores[..., None] + lprobs).reshape(b, k * vocab)
        top_scores, top_idx = jax.lax.top_k(cand, 2 * k)
        parent, token = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
        is_eos = token == EOS_IDX
        # Hypotheses: EOS among the best K, in rank order, until K are collected.
        eos_top = is_eos[:, :k] & jnp.isfinite(top_scores[:, :k]) & (fin_count < k)[:, None]
        slot = fin_count[:, None] + jnp.cumsum(eos_top, axis=1) - 1
        accept = eos_top & (slot < k)
        ended = jnp.take_along_axis(seqs, parent[:, :k, None], axis=1)
        ended = jnp.where(positions == t, EOS_IDX, ended)
        norm = top_scores[:, :k] / (t + 2).astype(jnp.float32) ** len_penalty
        slot = jnp.where(accept, slot, k)  # out of range: dropped
        fin_seqs = fin_seqs.at[batch_idx, slot].set(ended, mode="drop")
        fin_scores = fin_scores.at[batch_idx, slot].set(norm, mode="drop")
        fin_count = fin_count + jnp.sum(accept, axis=1, dtype=jnp.int32)
        # Live beams: the best K candidates that are not EOS.
        keep = jnp.argsort(is_eos, axis=1, stable=True)[:, :k]
        scores = jnp.take_along_axis(top_scores, keep, axis=1)
        parent = jnp.take_along_axis(parent, keep, axis=1)
        token = jnp.take_along_axis(token, keep, axis=1)
        seqs = jnp.take_along_axis(seqs, parent[..., None], axis=1)
        seqs = jnp.where(positions == t, token[..., None], seqs)
        order = (batch_idx * k + parent).reshape(rows)
        caches = jax.tree.map(lambda c: c[order], caches)
        logits, caches = decoder.decode_step(token.reshape(rows, 1), memories, caches, t + 2)
        return t + 1, seqs, scores, logits[:, -1], caches, fin_seqs, fin_scores, fin_count

    carry = (
        jnp.int32(0),
        jnp.full((b, k, max_len), PAD_IDX, jnp.int32),
        scores,
        logits[:, -1],
        caches,
        jnp.full((b, k, max_len), PAD_IDX, jnp.int32),
        jnp.full((b, k), -jnp.inf, jnp.float32),
        jnp.zeros((b,), jnp.int32),
    )
    _, _, _, _, _, fin_seqs, fin_scores, _ = jax.lax.while_loop(cond, body, carry)
    if n_best:
        ranked = jnp.argsort(-fin_scores, axis=1, stable=True)
        return jnp.take_along_axis(fin_seqs, ranked[..., None], axis=1)
    best = jnp.argmax(fin_scores, axis=1)
    return jnp.take_along_axis(fin_seqs, best[:, None, None], axis=1)[:, 0]


def add_nllb_control_symbols(model_proto: bytes, langs: Sequence[str]) -> bytes:
    """The NLLB SentencePiece model as fairseq2's NLLB tokenizer loads it.

    Like fairseq2n's ``sp_model_proto_loader``: append ``__lang__`` for each language, then
    the three data tags, as CONTROL pieces; then ``<pad>``, moved to index 0 (every other id
    shifts by one) and made the model's pad piece.

    Args:
        model_proto: The bytes of the NLLB ``.model`` file (``sentencepiece.source.256000.model``).
        langs: The languages, in token order.

    Returns:
        The serialized model (needs the ``protobuf`` package).

    Raises:
        ImportError: Without protobuf.
        ValueError: If the model already defines one of the added symbols.
    """
    try:
        from sentencepiece import sentencepiece_model_pb2 as sp_pb2
    except ImportError as e:
        raise ImportError(
            "editing a SentencePiece model needs protobuf: pip install 'lcm-jax[sonar]'"
        ) from e
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(model_proto)
    symbols = [f"__{lang}__" for lang in langs] + list(DATA_TAGS)
    existing = {p.piece for p in proto.pieces}
    clash = [s for s in [*symbols, "<pad>"] if s in existing]
    if clash:
        raise ValueError(
            f"the SentencePiece model already defines {clash[0]!r} ({len(clash)} of the symbols "
            "fairseq2 adds): pass the plain NLLB model or one converted with all of them"
        )
    control = sp_pb2.ModelProto.SentencePiece.CONTROL
    for symbol in symbols:
        piece = proto.pieces.add()
        piece.piece, piece.type = symbol, control
    proto.trainer_spec.pad_piece = "<pad>"
    pieces = [
        sp_pb2.ModelProto.SentencePiece.FromString(p.SerializeToString()) for p in proto.pieces
    ]
    del proto.pieces[:]
    pad = proto.pieces.add()
    pad.piece, pad.type = "<pad>", control
    proto.pieces.extend(pieces)
    return proto.SerializeToString()


class SonarTokenizer:
    """fairseq2's NLLB tokenizer: SentencePiece with ``__lang__`` tags and PAD at id 0.

    Args:
        model_proto: A SentencePiece model in that layout (see :meth:`from_nllb`).
        langs: Its languages, in token order.

    Raises:
        ValueError: If the special ids are not PAD 0, UNK 1, BOS 2, EOS 3, or a language has
            no control symbol.
    """

    def __init__(self, model_proto: bytes, langs: Sequence[str]):
        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        sp = self._sp
        actual = {"pad": sp.pad_id(), "unk": sp.unk_id(), "bos": sp.bos_id(), "eos": sp.eos_id()}
        expected = {"pad": PAD_IDX, "unk": UNK_IDX, "bos": BOS_IDX, "eos": EOS_IDX}
        if actual != expected:
            raise ValueError(
                f"tokenizer special ids {actual} are not fairseq2's NLLB layout {expected}; "
                "build it from the NLLB model with SonarTokenizer.from_nllb"
            )
        self.langs = tuple(langs)
        self._lang_ids = {}
        for lang in self.langs:
            idx = sp.piece_to_id(f"__{lang}__")
            if idx == sp.unk_id() or not sp.is_control(idx):
                raise ValueError(f"tokenizer has no control symbol __{lang}__")
            self._lang_ids[lang] = idx

    @classmethod
    def from_nllb(
        cls, path: str | os.PathLike[str], langs: Sequence[str] = SONAR_LANGS
    ) -> SonarTokenizer:
        """Load the NLLB SentencePiece model and add fairseq2's symbols (or take a model that
        already has them, such as a converted directory's ``tokenizer.model``).

        Raises:
            FileNotFoundError: If there is no such file.
            ValueError: If it is not a SentencePiece model of the expected layout.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"SentencePiece model not found: {path}")
        data = path.read_bytes()
        try:
            sp = spm.SentencePieceProcessor(model_proto=data)
        except RuntimeError as e:
            raise ValueError(f"{path}: not a SentencePiece model ({e})") from e
        if sp.piece_to_id("<pad>") == PAD_IDX and sp.is_control(PAD_IDX):
            return cls(data, langs)  # already in fairseq2's layout
        return cls(add_nllb_control_symbols(data, langs), langs)

    @property
    def vocab_size(self) -> int:
        """Number of ids (SentencePiece pieces, tags and PAD)."""
        return self._sp.get_piece_size()

    def lang_id(self, lang: str) -> int:
        """The ``__lang__`` token id of ``lang`` (e.g. "fra_Latn").

        Raises:
            ValueError: For a language the tokenizer does not have.
        """
        try:
            return self._lang_ids[lang]
        except KeyError:
            near = [x for x in self.langs if x.split("_")[0] == str(lang).split("_")[0]]
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ValueError(
                f"unknown language {lang!r}: SONAR names languages like 'eng_Latn' (ISO 639-3 "
                f"and script; {len(self.langs)} known){hint}"
            ) from None

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """SentencePiece ids of each text, without language tag or EOS."""
        return self._sp.encode(list(texts), out_type=int, num_threads=os.cpu_count() or 1)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Texts of id sequences; control symbols (tags, PAD, EOS) decode to nothing."""
        seqs = [[int(i) for i in seq] for seq in ids]
        return self._sp.decode(seqs) if seqs else []  # SentencePiece: [] -> '' otherwise

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model (what :meth:`save` writes)."""
        return self._proto

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ``.model`` file atomically."""
        write_bytes_atomic(Path(path), self._proto)


def _generate_impl(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    concepts: jax.Array,
    lang: jax.Array,
    max_len: int,
    beam_size: int,
    n_best: bool = False,
) -> jax.Array:
    decoder = nnx.merge(graphdef, state).decoder
    if beam_size == 1 and not n_best:
        return sonar_greedy_search(decoder, concepts, lang, max_len)
    return sonar_beam_search(decoder, concepts, lang, max_len, beam_size, n_best=n_best)


class SonarCodec(Codec):
    """A converted SONAR model behind the :class:`~encoders.codec.Codec` interface.

    ``encode`` and ``decode`` work as for any codec (same input rules, batching and
    compilation buckets), in the source and target languages (default: the model's,
    "eng_Latn"); both take a per-call ``lang`` too. Vectors are SONAR's own: D = 1024 for the
    ``basic`` models.

    Args:
        model: The SONAR model.
        tokenizer: Its tokenizer (same vocabulary size).
        batch_size: Most sentences per jitted call.
        source_lang: Language ``encode`` reads.
        target_lang: Language ``decode`` writes.
        encode_precision: As for :class:`~encoders.codec.Codec`.

    Raises:
        ValueError: If the tokenizer's size or languages do not match the model's.
    """

    config: SonarCodecConfig
    tokenizer: SonarTokenizer

    def __init__(
        self,
        model: SonarModel,
        tokenizer: SonarTokenizer,
        *,
        batch_size: int = 128,
        source_lang: str | None = None,
        target_lang: str | None = None,
        encode_precision: EncodePrecision = "float32",
    ):
        cfg = model.config
        if tokenizer.vocab_size != cfg.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} ids but the model has {cfg.vocab_size} "
                "token embeddings (was it converted with this model's SentencePiece model?)"
            )
        if tokenizer.langs != cfg.langs:
            raise ValueError("tokenizer languages differ from the model config's langs")
        self.config = cfg
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._graphdef, self._state = nnx.split(model)
        self._encode = jax.jit(functools.partial(_encode_impl, self._graphdef))
        self._generate = jax.jit(
            functools.partial(_generate_impl, self._graphdef),
            static_argnames=("max_len", "beam_size", "n_best"),
        )
        self._log_likelihood = jax.jit(
            functools.partial(_log_likelihood_impl, self._graphdef), static_argnames="prefix"
        )
        self._lengths = _ladder(LENGTH_BUCKETS, cfg.max_len)
        self.encode_precision = encode_precision
        self.source_lang = self.target_lang = cfg.default_lang
        self.set_languages(source=source_lang, target=target_lang)

    def set_languages(self, *, source: str | None = None, target: str | None = None) -> None:
        """Change the default source and/or target language (None keeps the current one).

        Raises:
            ValueError: For an unknown language.
        """
        if source is not None:
            self.tokenizer.lang_id(source)
            self.source_lang = source
        if target is not None:
            self.tokenizer.lang_id(target)
            self.target_lang = target

    @property
    def decoder_prefix(self) -> tuple[int, ...]:
        """``(</s>, __lang__)`` of the current :attr:`target_lang`, as fairseq2 starts."""
        return (EOS_IDX, self.tokenizer.lang_id(self.target_lang))

    @property
    def max_decode_len(self) -> int:
        """Most generated tokens, EOS included: the decoder's positions minus the prompt."""
        dec = self.config.decoder
        return 0 if dec is None else dec.max_seq_len - 2

    def encode(self, sentences: Sequence[str], *, lang: str | None = None) -> np.ndarray:
        """Encode sentences into SONAR vectors.

        Each becomes ``__lang__ pieces </s>``, cut to the encoder's positions (514 for SONAR,
        as its pipeline does; one warning per call says how many were cut).

        Args:
            sentences: N strings (non-blank).
            lang: Their language (default: ``source_lang``).

        Returns:
            [N, D] float32.

        Raises:
            TypeError: If ``sentences`` is a single ``str`` or holds a non-string.
            ValueError: For a blank sentence, an unknown language, or a model with no encoder.
        """
        if self.config.encoder is None:
            raise ValueError(
                "this SONAR model has no encoder: convert an encoder checkpoint too "
                "(lcm convert-sonar ENCODER.pt DECODER.pt OUT_DIR ...)"
            )
        sentences = check_sentences(sentences)
        lang_id = self.tokenizer.lang_id(lang or self.source_lang)
        cap = self.config.encoder.max_seq_len
        ids = self.tokenizer.encode(sentences)
        rows = [[lang_id, *x, EOS_IDX][:cap] for x in ids]
        n_long = sum(len(x) + 2 > cap for x in ids)
        if n_long:
            logger.warning("encode(): truncated %d sentence(s) to %d tokens", n_long, cap)
        return self._encode_rows(rows)

    def decode(
        self,
        vectors: np.ndarray | Sequence[Sequence[float]],
        *,
        beam_size: int = 1,
        max_len: int | None = None,
        lang: str | None = None,
        rerank: bool = False,
    ) -> list[str]:
        """Decode SONAR vectors into sentences.

        Args:
            vectors: [N, D] real, finite values.
            beam_size: 1 for greedy decoding, more for fairseq2's beam search.
            max_len: Most tokens per sentence, EOS included (default and upper limit:
                :attr:`max_decode_len`, 510 for SONAR, as its pipeline generates). Each call
                holds at most :data:`DECODE_CACHE_BYTES` of KV cache: fewer sentences per
                call than ``batch_size`` when long outputs or wide beams need it.
            lang: Language to write (default: ``target_lang``).
            rerank: Of the ``beam_size`` hypotheses, return the one whose own encoding (in
                ``lang``) lies nearest to the vector (see :meth:`Codec.decode`).

        Returns:
            N sentences.

        Raises:
            ValueError: For bad vectors or options, an unknown language, or no decoder.
        """
        if self.config.decoder is None:
            raise ValueError(
                "this SONAR model has no decoder: convert a decoder checkpoint too "
                "(lcm convert-sonar ENCODER.pt DECODER.pt OUT_DIR ...)"
            )
        vecs, max_len = self._check_decode_args(vectors, beam_size, max_len, rerank)
        if rerank and self.config.encoder is None:
            raise ValueError(
                "rerank=True encodes the candidates, but this SONAR model has no encoder: "
                "convert an encoder checkpoint too"
            )
        lang = lang or self.target_lang
        lang_id = np.int32(self.tokenizer.lang_id(lang))
        dec = self.config.decoder
        row_bytes = 2 * 4 * dec.num_layers * (max_len + 2) * dec.model_dim * beam_size
        check_cache_fits(row_bytes, beam_size)
        rows = max(
            1, min(beam_call_rows(beam_size, self.batch_size), DECODE_CACHE_BYTES // row_bytes)
        )
        seqs = self._generate_rows(
            vecs, lang_id, max_len=max_len, beam_size=beam_size, batch_size=rows, n_best=rerank
        )
        texts = self.tokenizer.decode(seqs)
        if not rerank:
            return texts
        return closest_candidates(vecs, texts, functools.partial(self.encode, lang=lang))

    def _default_card(self, n_params: int) -> str:
        cfg = self.config
        parts = [
            f"{name} {c.arch}: {c.num_layers} layers, d {c.model_dim}, {c.num_heads} heads, "
            f"FFN {c.ffn_inner_dim}"
            for name, c in (("encoder", cfg.encoder), ("decoder", cfg.decoder))
            if c is not None
        ]
        return (
            "# SONAR text model (converted)\n\n"
            + "; ".join(parts)
            + f". D {cfg.concept_dim}, vocabulary {cfg.vocab_size}, {len(cfg.langs)} "
            f"languages, {n_params:,} parameters.\n"
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 128,
        source_lang: str | None = None,
        target_lang: str | None = None,
    ) -> SonarCodec:
        """Open a directory written by ``lcm convert-sonar`` (or :meth:`save`).

        Raises:
            FileNotFoundError: If the directory or one of its files is missing.
            ValueError: For a config that is not a SONAR one, or mismatched weights.
        """
        path = Path(path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"SONAR model directory not found: {path}")
        for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
            if not (path / name).is_file():
                raise FileNotFoundError(
                    f"{path}: missing {name} (a SONAR model directory holds {CONFIG_FILE}, "
                    f"{WEIGHTS_FILE}, {TOKENIZER_FILE} and {CARD_FILE})"
                )
        try:
            cfg = from_dict(SonarCodecConfig, read_yaml(path / CONFIG_FILE))
        except ConfigError as e:
            raise ConfigError(f"{path / CONFIG_FILE}: {e}") from e
        tokenizer = SonarTokenizer((path / TOKENIZER_FILE).read_bytes(), cfg.langs)
        weights = load_weights(path / WEIGHTS_FILE)
        model = build_with_weights(
            lambda: SonarModel(cfg, nnx.Rngs(0)), weights, source=str(path / WEIGHTS_FILE)
        )
        return cls(
            model,
            tokenizer,
            batch_size=batch_size,
            source_lang=source_lang,
            target_lang=target_lang,
        )

"""SONAR's text encoder and decoder networks (see :mod:`encoders.sonar`)."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcm.nn import Attention, Block, KVCache, LayerNorm, TokenEmbedding, matmul
from lcm.nn.transformer import BlockNames

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


class SonarAttention(Attention):
    """fairseq2's ``StandardMultiheadAttention`` as a self-:class:`~lcm.nn.Attention`:
    ``softmax(q k^T / sqrt(head_dim)) v`` per head, masks and the KV cache as ours.

    Kept for parity: fairseq2's separate, biased ``q_proj``/``k_proj``/``v_proj``/
    ``output_proj`` (its key names, which converted directories hold) instead of our fused,
    bias-free ``qkv``/``out``; no RoPE (SONAR adds sinusoidal positions to its inputs).

    Args:
        dim: Model width d.
        num_heads: N.
        dtype: Compute dtype.
        rngs: Initialization RNGs.
    """

    def __init__(self, dim: int, num_heads: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        self.kind = "self"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.rope_base = None
        self.dtype = dtype
        dense_kw = {"dtype": dtype, "partition_bias": True, "rngs": rngs}
        self.q_proj = matmul.dense(dim, dim, ("embed", "heads"), **dense_kw)
        self.k_proj = matmul.dense(dim, dim, ("embed", "heads"), **dense_kw)
        self.v_proj = matmul.dense(dim, dim, ("embed", "heads"), **dense_kw)
        self.output_proj = matmul.dense(dim, dim, ("heads", "embed"), **dense_kw)

    def _project(self, x: jax.Array, positions: jax.Array) -> tuple[jax.Array, ...]:
        heads = (self.num_heads, self.head_dim)
        return tuple(
            p(x).reshape(*x.shape[:-1], *heads) for p in (self.q_proj, self.k_proj, self.v_proj)
        )

    def _merge(self, out: jax.Array) -> jax.Array:
        return self.output_proj(out.reshape(*out.shape[:-2], -1))


class SonarMemoryAttention(nnx.Module):
    """Encoder-decoder attention to a memory of one vector: ``output_proj(v_proj(m))``.

    The softmax over a single key is exactly 1 at every query, so this equals fairseq2's
    attention whatever its query and key projections and its layer norm hold (they are not
    kept). Kept for parity: fairseq2's biased ``v_proj``/``output_proj`` names; the whole
    sublayer output is projected once per sentence (:meth:`project_memory`), so that a decoding
    step adds it and nothing more (ours, a single-key :class:`~lcm.nn.Attention`, keeps the
    bias-free ``value``/``out`` of its checkpoints).

    Args:
        dim: Model width d (the memory is d-dim too).
        dtype: Compute dtype.
        rngs: Initialization RNGs.
    """

    def __init__(self, dim: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        dense_kw = {"dtype": dtype, "partition_bias": True, "rngs": rngs}
        self.v_proj = matmul.dense(dim, dim, ("concept", "heads"), **dense_kw)
        self.output_proj = matmul.dense(dim, dim, ("heads", "embed"), **dense_kw)

    def project_memory(self, memory: jax.Array, mask: None = None) -> jax.Array:
        """``memory`` [B, d] -> the sublayer output at every query position, [B, 1, d]."""
        return self.output_proj(self.v_proj(memory))[:, None, :]

    def __call__(self, x: jax.Array, memory: jax.Array, *, mask: None = None) -> jax.Array:
        """The sublayer output for queries ``x``: the projected ``memory`` [B, 1, d]."""
        return memory


class SonarFeedForward(nnx.Module):
    """fairseq2's ``StandardFeedForwardNetwork`` with ReLU and biases: [..., d] -> [..., d].

    Kept for parity: ReLU and biases (ours are GELU or SwiGLU, bias-free) and fairseq2's
    ``inner_proj``/``output_proj`` names.
    """

    def __init__(self, dim: int, inner_dim: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        dense_kw = {"dtype": dtype, "partition_bias": True, "rngs": rngs}
        self.inner_proj = matmul.dense(dim, inner_dim, ("embed", "mlp"), **dense_kw)
        self.output_proj = matmul.dense(inner_dim, dim, ("mlp", "embed"), **dense_kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[..., d] -> [..., d]."""
        return self.output_proj(jax.nn.relu(self.inner_proj(x)))


# fairseq2's attribute names of a layer's sublayers (the converted directories' keys); the
# encoder-decoder attention has no norm (see SonarMemoryAttention).
_ENCODER_NAMES: BlockNames = {
    "attention": ("self_attn_layer_norm", "self_attn"),
    "ffn": ("ffn_layer_norm", "ffn"),
}
_DECODER_NAMES: BlockNames = {**_ENCODER_NAMES, "cross_attention": (None, "encoder_decoder_attn")}


def sonar_layer(
    cfg: SonarTransformerConfig, *, decoder: bool, dtype: jnp.dtype, rngs: nnx.Rngs
) -> Block:
    """A SONAR layer as our pre-norm :class:`~lcm.nn.Block` (fairseq2's layer-norm order is
    pre-norm too): ``x + attn(ln(x))``, in the decoder causal and followed by ``x + memory``
    (the encoder-decoder attention to the sentence vector), then ``x + ffn(ln(x))``. LayerNorm
    with bias and eps 1e-5, fairseq2's names."""
    d = cfg.model_dim
    # Keyword order = initialization order.
    return Block(
        lambda: LayerNorm(d, eps=_LN_EPS, dtype=dtype),
        attention=SonarAttention(d, cfg.num_heads, dtype=dtype, rngs=rngs),
        cross_attention=SonarMemoryAttention(d, dtype=dtype, rngs=rngs) if decoder else None,
        ffn=SonarFeedForward(d, cfg.ffn_inner_dim, dtype=dtype, rngs=rngs),
        causal=decoder,
        names=_DECODER_NAMES if decoder else _ENCODER_NAMES,
    )


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
            [sonar_layer(cfg, decoder=False, dtype=dtype, rngs=rngs) for _ in range(cfg.num_layers)]
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
            x = layer(x, mask=mask)
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
            [sonar_layer(cfg, decoder=True, dtype=dtype, rngs=rngs) for _ in range(cfg.num_layers)]
        )
        self.layer_norm = LayerNorm(cfg.model_dim, eps=_LN_EPS, dtype=dtype)

    def _inputs(self, tokens: jax.Array, positions: jax.Array) -> jax.Array:
        x = self.embed(tokens)
        return (x.astype(jnp.float32) + _positions(self.config, positions)).astype(x.dtype)

    def project_memory(self, concepts: jax.Array) -> tuple[jax.Array, ...]:
        """Per-layer encoder-decoder attention outputs of ``concepts`` [B, d]: [B, 1, d] each."""
        return tuple(layer.project_memory(concepts) for layer in self.layers)

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
        return tuple(layer.init_cache(batch, max_len) for layer in self.layers)

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
            x, cache = layer.decode(x, cache, index, memory)
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

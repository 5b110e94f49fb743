"""Config dataclasses of the codec: the ``model:`` and ``data:`` sections of its YAML."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class CodecModelConfig:
    """Architecture and training objective of the sentence codec.

    Attributes:
        vocab_size: Tokenizer size (must equal the tokenizer's).
        d_model: Transformer width (encoder and decoder).
        num_heads: Attention heads (``d_model`` must be divisible by it).
        encoder_layers: Encoder depth.
        decoder_layers: Decoder depth.
        mlp_dim: Feed-forward hidden width.
        ffn: Feed-forward kind.
        norm: Normalization kind.
        positions: "rope" (rotary, in attention), "learned" or "sinusoidal" (added to inputs).
        concept_dim: D, the size of a sentence vector.
        max_len: Longest token sequence, EOS included: longer inputs are truncated by
            ``Codec.encode``, and it caps generated length.
        dropout: Residual dropout while training.
        dtype: Compute dtype (parameters stay float32).
        remat: Rematerialize each encoder and decoder block in the backward pass (less
            activation memory for one more forward pass; results unchanged).
        denoise_prob: Share of training sentences whose encoder input is corrupted.
        token_mask_prob: In a corrupted sentence, chance of a token becoming ``<mask>``.
        token_drop_prob: In a corrupted sentence, chance of a token being deleted.
        concept_noise: Largest relative norm ``|noise| / |v|`` of the Gaussian noise added to
            the concept vector before decoding; each sentence draws one in
            ``[0, concept_noise]``, so the decoder learns to read clean and noisy vectors.
        label_smoothing: Label smoothing of the reconstruction cross-entropy.
        contrastive_weight: Weight of an in-batch InfoNCE term tying the encoding of the
            corrupted input to that of the clean input (0 disables it and its extra encoder
            pass).
        contrastive_temperature: Temperature of the InfoNCE term.
        variational: CALM's variational latent (arXiv 2510.27688): the encoder also predicts
            a log-variance, training decodes a sample ``z = mean + sigma * eps`` and the loss
            adds ``kl_weight`` times the KL to ``N(0, I)``; inference encodes to the mean.
            Adds the ``encoder/log_var`` parameters (none without it).
        kl_weight: Weight of the KL term, relative to the reconstruction cross-entropy summed
            over a sentence's tokens (CALM's weighting; see ``CodecModel.loss``).
        kl_free_bits: Free bits, in nats per concept dimension: each dimension's KL counts as
            at least this much (CALM's ``kl_clamp``), so a dimension below it gets no pull
            towards the prior.
        latent_dropout: Dropout on the decoded vector while training (CALM drops the sampled
            latent at 0.15); never applied when encoding.
        token_replace_prob: Per-token chance, in every training sentence, that an ordinary
            token of the encoder's input becomes a random other ordinary token (special ids
            are never touched or drawn); applied after the mask/drop corruption, to the
            tokens it left.
    """

    vocab_size: int = 8192
    d_model: int = 256
    num_heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 5
    mlp_dim: int = 1024
    ffn: Literal["gelu", "swiglu"] = "gelu"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    positions: Literal["rope", "learned", "sinusoidal"] = "rope"
    concept_dim: int = 256
    max_len: int = 128
    dropout: float = 0.0
    dtype: Literal["float32", "bfloat16"] = "float32"
    remat: bool = False
    denoise_prob: float = 0.5
    token_mask_prob: float = 0.1
    token_drop_prob: float = 0.05
    concept_noise: float = 0.15
    label_smoothing: float = 0.05
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.05
    # The fields below came after codec fingerprints (see ``identity``): keep them last.
    variational: bool = False
    kl_weight: float = 1e-3
    kl_free_bits: float = 0.5
    latent_dropout: float = 0.0
    token_replace_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}"
            )
        if (self.d_model // self.num_heads) % 2 and self.positions == "rope":
            raise ValueError("RoPE needs an even head dimension (d_model / num_heads)")
        rates = ("denoise_prob", "token_mask_prob", "token_drop_prob", "dropout")
        for name in (*rates, "latent_dropout", "token_replace_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0 and not (name == "denoise_prob" and value == 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.token_mask_prob + self.token_drop_prob >= 1.0:
            raise ValueError("token_mask_prob + token_drop_prob must be below 1")
        if self.max_len < 2:
            raise ValueError(f"max_len must be at least 2, got {self.max_len}")
        for name in ("kl_weight", "kl_free_bits"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def identity(self) -> str:
        """The config's share of a codec's fingerprint: ``repr(self)`` without the fields
        added after fingerprints began while they hold their defaults, so that a codec made
        before them keeps its fingerprint, and the datasets embedded with it their space."""
        shown = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if not (f.name in _LATER_FIELDS and getattr(self, f.name) == f.default)
        ]
        return f"{type(self).__qualname__}({', '.join(shown)})"


# Fields added to CodecModelConfig after ``Codec.fingerprint`` first hashed its repr.
_LATER_FIELDS = frozenset(
    ("variational", "kl_weight", "kl_free_bits", "latent_dropout", "token_replace_prob")
)


@dataclasses.dataclass(frozen=True)
class CodecDataConfig:
    """Where the prepared sentence data lives and how batches are shaped.

    Attributes:
        data_dir: Output folder of ``tools/prepare_codec_data.py`` (``~`` is expanded).
        split: Which token file to read ("train", "valid" or "test").
        buckets: Padded sequence lengths (EOS included), ascending; each compiles once, and
            sentences longer than the last bucket are left out.
        pool_batches: Batches formed together from one length-sorted pool of
            ``pool_batches * batch_size`` sentences (larger = less padding).
        curriculum_steps: Short sentences first: the longest allowed length grows linearly
            from the first to the last bucket over this many steps (0: all from step 0).
    """

    data_dir: str = "~/data/codec"
    split: Literal["train", "valid", "test"] = "train"
    buckets: tuple[int, ...] = (12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128)
    pool_batches: int = 128
    curriculum_steps: int = 0

    def __post_init__(self) -> None:
        if not self.buckets or list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError(f"buckets must be ascending and distinct, got {self.buckets}")
        if self.buckets[0] < 2:
            raise ValueError("the smallest bucket must hold at least one token and EOS")
        if self.pool_batches < 1:
            raise ValueError(f"pool_batches must be positive, got {self.pool_batches}")
        if self.curriculum_steps < 0:
            raise ValueError(f"curriculum_steps must be >= 0, got {self.curriculum_steps}")

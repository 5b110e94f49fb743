"""The codec network: a Transformer sentence encoder to one D-dim vector, a decoder that
cross-attends to that vector, and the denoising autoencoder loss that trains both.

Token layout (see ``encoders.tokenizer``): a sentence is its token ids followed by ``EOS``,
right-padded with ``PAD = 0``. The encoder reads that; the decoder reads ``BOS`` + the ids and
predicts the ids + ``EOS``.

With ``variational`` set, the codec follows CALM's autoencoder (arXiv 2510.27688): the encoder
predicts a Gaussian ``q(z|x)``, training decodes a sample of it and adds a KL term with free
bits, and encoding returns its mean (see :meth:`CodecModel.loss`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from encoders.config import CodecModelConfig
from encoders.tokenizer import BOS_ID, EOS_ID, FIRST_ORDINARY_ID, MASK_ID, PAD_ID
from lcm.nn import (
    KVCache,
    LearnedPositions,
    MemoryKV,
    TokenEmbedding,
    call_block,
    dropout,
    make_block,
    make_norm,
    matmul,
    sinusoidal_positions,
    split_rng,
)

_ROPE_BASE = 10000.0


def compute_dtype(cfg: CodecModelConfig) -> jnp.dtype:
    """The jnp dtype named by ``cfg.dtype``."""
    return jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32


class _Positions(nnx.Module):
    """Absolute position encodings added to the inputs (none for RoPE, which lives in
    attention)."""

    def __init__(self, cfg: CodecModelConfig, rngs: nnx.Rngs):
        self.kind = cfg.positions
        self.d_model = cfg.d_model
        self.table = (
            LearnedPositions(cfg.max_len, cfg.d_model, dtype=compute_dtype(cfg), rngs=rngs)
            if cfg.positions == "learned"
            else None
        )

    @property
    def rope_base(self) -> float | None:
        """The RoPE base for the attention layers, or None when positions are absolute."""
        return _ROPE_BASE if self.kind == "rope" else None

    def __call__(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        """Add encodings for ``positions`` [T] to ``x`` [B, T, d]."""
        if self.kind == "learned":
            return x + self.table(positions)
        if self.kind == "sinusoidal":
            return x + sinusoidal_positions(positions, self.d_model).astype(x.dtype)
        return x


class SentenceEncoder(nnx.Module):
    """Pre-LN bidirectional Transformer, masked mean pooling, linear projection to D (and, for
    a variational codec, a second projection to the log-variance of ``q(z|x)``).

    Args:
        cfg: Model config.
        embed: Token embedding (shared with the decoder).
        rngs: Initialization RNGs.
    """

    def __init__(self, cfg: CodecModelConfig, embed: TokenEmbedding, rngs: nnx.Rngs):
        dtype = compute_dtype(cfg)
        dense_kw = {"dtype": dtype, "partition_bias": True, "rngs": rngs}
        self.dropout_rate = cfg.dropout
        self.remat = cfg.remat
        self.embed = embed
        self.positions = _Positions(cfg, rngs)
        self.blocks = nnx.List(
            [
                make_block(
                    cfg.d_model,
                    cfg.num_heads,
                    cfg.mlp_dim,
                    num_layers=cfg.encoder_layers,
                    ffn=cfg.ffn,
                    norm=cfg.norm,
                    rope_base=self.positions.rope_base,
                    dropout_rate=cfg.dropout,
                    dtype=dtype,
                    rngs=rngs,
                )
                for _ in range(cfg.encoder_layers)
            ]
        )
        self.norm = make_norm(cfg.norm, cfg.d_model, dtype=dtype)
        self.project = matmul.dense(cfg.d_model, cfg.concept_dim, ("embed", "concept"), **dense_kw)
        # Created only for a variational codec, and last in the encoder: a deterministic codec
        # keeps exactly today's parameters, paths and initial values.
        self.log_var = (
            matmul.dense(cfg.d_model, cfg.concept_dim, ("embed", "concept"), **dense_kw)
            if cfg.variational
            else None
        )

    def __call__(self, tokens: jax.Array, *, rng: jax.Array | None = None) -> jax.Array:
        """Encode padded sentences.

        Args:
            tokens: [B, L] int ids (sentence, EOS, then PAD). Outputs do not depend on L or
                on other rows.
            rng: Dropout key, or None (inference).

        Returns:
            Concept vectors [B, D] float32 (the posterior mean for a variational codec).
        """
        return self.project(self._pool(tokens, rng)).astype(jnp.float32)

    def posterior(
        self, tokens: jax.Array, *, rng: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array | None]:
        """The concept and, for a variational codec, the spread of ``q(z|x)`` around it.

        Args:
            tokens: [B, L] int ids, as for :meth:`__call__`.
            rng: Dropout key, or None (inference).

        Returns:
            The mean [B, D] float32 (what :meth:`__call__` returns) and the log-variance
            [B, D] float32, or None when the codec is not variational.
        """
        pooled = self._pool(tokens, rng)
        mean = self.project(pooled).astype(jnp.float32)
        if self.log_var is None:
            return mean, None
        return mean, self.log_var(pooled).astype(jnp.float32)

    def _pool(self, tokens: jax.Array, rng: jax.Array | None) -> jax.Array:
        """The masked mean [B, d_model] float32 of the final hidden states of ``tokens``."""
        mask = tokens != PAD_ID
        positions = np.arange(tokens.shape[1])  # static: constant RoPE tables
        rngs = split_rng(rng, len(self.blocks) + 1)
        x = dropout(self.positions(self.embed(tokens), positions), self.dropout_rate, rngs[0])
        for block, r in zip(self.blocks, rngs[1:]):
            x = call_block(block, x, mask=mask, positions=positions, rng=r, remat=self.remat)
        x = self.norm(x).astype(jnp.float32)
        weights = mask.astype(jnp.float32)[..., None]
        return jnp.sum(x * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)


class SentenceDecoder(nnx.Module):
    """Causal Transformer that cross-attends to one memory slot (the concept vector projected
    to d_model), with output logits tied to the token embedding.

    Args:
        cfg: Model config.
        embed: Token embedding (shared with the encoder).
        rngs: Initialization RNGs.
    """

    def __init__(self, cfg: CodecModelConfig, embed: TokenEmbedding, rngs: nnx.Rngs):
        dtype = compute_dtype(cfg)
        dense_kw = {"dtype": dtype, "partition_bias": True, "rngs": rngs}
        self.dropout_rate = cfg.dropout
        self.remat = cfg.remat
        self.embed = embed
        self.positions = _Positions(cfg, rngs)
        self.memory = matmul.dense(cfg.concept_dim, cfg.d_model, ("concept", "embed"), **dense_kw)
        self.blocks = nnx.List(
            [
                make_block(
                    cfg.d_model,
                    cfg.num_heads,
                    cfg.mlp_dim,
                    num_layers=cfg.decoder_layers,
                    causal=True,
                    cross_attention="single_key",
                    ffn=cfg.ffn,
                    norm=cfg.norm,
                    rope_base=self.positions.rope_base,
                    dropout_rate=cfg.dropout,
                    dtype=dtype,
                    rngs=rngs,
                )
                for _ in range(cfg.decoder_layers)
            ]
        )
        self.norm = make_norm(cfg.norm, cfg.d_model, dtype=dtype)

    def project_memory(self, concepts: jax.Array) -> tuple[MemoryKV, ...]:
        """Per-layer cross-attention memories of ``concepts`` [B, D] (computed once)."""
        memory = self.memory(concepts)[:, None, :]  # [B, 1, d_model]
        return tuple(block.project_memory(memory) for block in self.blocks)

    def __call__(
        self, tokens: jax.Array, concepts: jax.Array, *, rng: jax.Array | None = None
    ) -> jax.Array:
        """Teacher-forced pass.

        Args:
            tokens: Decoder input [B, T] (BOS, then the sentence).
            concepts: [B, D].
            rng: Dropout key, or None.

        Returns:
            Next-token logits [B, T, vocab] float32.
        """
        positions = np.arange(tokens.shape[1])  # static: constant RoPE tables
        memories = self.project_memory(concepts)
        rngs = split_rng(rng, len(self.blocks) + 1)
        x = dropout(self.positions(self.embed(tokens), positions), self.dropout_rate, rngs[0])
        for block, memory, r in zip(self.blocks, memories, rngs[1:]):
            x = call_block(block, x, memory, positions=positions, rng=r, remat=self.remat)
        return self.embed.attend(self.norm(x))

    def init_cache(self, batch: int, max_len: int) -> tuple[KVCache, ...]:
        """Empty per-layer KV caches for decoding up to ``max_len`` positions."""
        return tuple(block.init_cache(batch, max_len) for block in self.blocks)

    def decode_step(
        self,
        tokens: jax.Array,
        memories: tuple[MemoryKV, ...],
        caches: tuple[KVCache, ...],
        index: jax.Array,
    ) -> tuple[jax.Array, tuple[KVCache, ...]]:
        """Incremental pass over new tokens at positions ``index ..``.

        Args:
            tokens: [B, T] new input ids (T = 1 when generating).
            memories: From :meth:`project_memory`.
            caches: From :meth:`init_cache` or the previous step.
            index: Position of ``tokens[:, 0]`` (scalar int32).

        Returns:
            Logits [B, T, vocab] float32 and the updated caches.
        """
        positions = index + jnp.arange(tokens.shape[1])
        x = self.positions(self.embed(tokens), positions)
        new_caches = []
        for block, memory, cache in zip(self.blocks, memories, caches):
            x, cache = block.decode(x, cache, index, memory)
            new_caches.append(cache)
        return self.embed.attend(self.norm(x)), tuple(new_caches)


def token_log_likelihood(
    decoder: nnx.Module, concepts: jax.Array, targets: jax.Array, prefix: tuple[int, ...]
) -> jax.Array:
    """Teacher-forced log-probabilities of token ids given concept vectors.

    The one function through which a likelihood objective reaches a codec's decoder (ours or
    the SONAR port: any module with ``decoder(tokens [B, S], concepts [B, D]) -> logits``).
    The decoder reads ``prefix + targets[:-1]`` and is scored on ``targets``.

    Args:
        decoder: A codec decoder.
        concepts: [B, D] raw (not normalized) concept vectors.
        targets: [B, L] int ids of each sentence, then ``EOS``, then ``PAD`` (0).
        prefix: The ids the decoder starts from: ``(BOS,)`` for our codec, ``(</s>, lang)``
            for SONAR (see ``Codec.decoder_prefix``).

    Returns:
        [B, L] float32 ``log p(targets[:, l] | prefix, targets[:, :l], concept)``, 0 at PAD.
    """
    batch = targets.shape[0]
    start = jnp.broadcast_to(jnp.asarray(prefix, targets.dtype), (batch, len(prefix)))
    inputs = jnp.concatenate([start, targets[:, :-1]], axis=1)
    logits = decoder(inputs, concepts)[:, len(prefix) - 1 :].astype(jnp.float32)
    # log_softmax gathered at the target, without materializing a second [B, L, V] array.
    gold = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    logp = gold - jax.nn.logsumexp(logits, axis=-1)
    return jnp.where(targets != PAD_ID, logp, 0.0)


def corrupt_tokens(
    tokens: jax.Array,
    rng: jax.Array,
    *,
    denoise_prob: float,
    mask_prob: float,
    drop_prob: float,
) -> jax.Array:
    """Denoising input: in a ``denoise_prob`` share of rows, replace tokens by ``<mask>`` or
    delete them (the rest shift left); EOS and padding are never touched.

    Args:
        tokens: [B, L] (ids, EOS, PAD...).
        rng: Key.
        denoise_prob: Chance that a row is corrupted at all.
        mask_prob: Per-token chance of ``<mask>`` in a corrupted row.
        drop_prob: Per-token chance of deletion in a corrupted row.

    Returns:
        [B, L] corrupted tokens, same layout.
    """
    k_row, k_tok = jax.random.split(rng)
    real = (tokens != PAD_ID) & (tokens != EOS_ID)
    hit = real & (jax.random.uniform(k_row, (tokens.shape[0], 1)) < denoise_prob)
    u = jax.random.uniform(k_tok, tokens.shape)
    drop = hit & (u < drop_prob)
    masked = hit & ~drop & (u < drop_prob + mask_prob)
    keep = (tokens != PAD_ID) & ~drop
    out = jnp.where(keep, jnp.where(masked, MASK_ID, tokens), PAD_ID)
    # A stable sort on "deleted" moves the kept tokens left, in order, and padding right.
    order = jnp.argsort(~keep, axis=1, stable=True)
    return jnp.take_along_axis(out, order, axis=1)


def replace_tokens(tokens: jax.Array, rng: jax.Array, *, prob: float, vocab_size: int) -> jax.Array:
    """CALM's input noise: each ordinary token becomes, with chance ``prob``, another ordinary
    token drawn uniformly; special ids (PAD, EOS, ``<mask>``...) are never replaced nor drawn.

    CALM's own code sets the chosen ids to 0, an ordinary token of its Llama 3 tokenizer; a
    random token keeps the input free of a tell-tale filler (``<mask>`` masking is the
    separate ``token_mask_prob`` option).

    Args:
        tokens: [B, L] (ids, EOS, PAD...).
        rng: Key.
        prob: Per-token chance of replacement.
        vocab_size: Number of ids; replacements lie in ``[FIRST_ORDINARY_ID, vocab_size)``.

    Returns:
        [B, L] tokens, same layout and length.
    """
    k_hit, k_shift = jax.random.split(rng)
    hit = (tokens >= FIRST_ORDINARY_ID) & (jax.random.uniform(k_hit, tokens.shape) < prob)
    n = vocab_size - FIRST_ORDINARY_ID
    # A shift in [1, n) modulo n reaches each of the other n - 1 ordinary ids with equal
    # chance and never the token itself, so ``prob`` is the share that really changes.
    shift = jax.random.randint(k_shift, tokens.shape, 1, n, dtype=tokens.dtype)
    other = FIRST_ORDINARY_ID + (tokens - FIRST_ORDINARY_ID + shift) % n
    return jnp.where(hit, other, tokens)


def gaussian_kl(mean: jax.Array, log_var: jax.Array, free_bits: float = 0.0) -> jax.Array:
    """``KL(N(mean, exp(log_var)) || N(0, I))`` of each row, with free bits as in CALM.

    Each dimension's KL is raised to at least ``free_bits`` before the sum over dimensions
    (CALM's ``kl_clamp``: clamp per example and dimension, sum over dimensions, mean over the
    batch is left to the caller). A dimension under the floor then costs a constant: the prior
    does not pull it, so every dimension may carry that much information for free and none
    collapses to the prior.

    Args:
        mean: [B, D].
        log_var: [B, D] natural log of the variances.
        free_bits: Floor in nats per dimension (0: the plain KL).

    Returns:
        [B] float32 nats.
    """
    kl = 0.5 * (jnp.square(mean) + jnp.exp(log_var) - 1.0 - log_var)
    return jnp.sum(jnp.maximum(kl, free_bits), axis=-1)


def relative_noise(concepts: jax.Array, rng: jax.Array, scale: jax.Array | float) -> jax.Array:
    """Add isotropic Gaussian noise of expected norm ``scale * |v|`` to each vector.

    Args:
        concepts: [B, D].
        rng: Key.
        scale: Relative norm, scalar or [B, 1].

    Returns:
        [B, D] noisy vectors (no gradient flows through the noise size).
    """
    norm = jax.lax.stop_gradient(jnp.linalg.norm(concepts, axis=-1, keepdims=True))
    z = jax.random.normal(rng, concepts.shape, concepts.dtype)
    return concepts + z * (scale * norm / math.sqrt(concepts.shape[-1]))


class CodecModel(nnx.Module):
    """Encoder + decoder sharing one token embedding, trained as a denoising (optionally
    variational) autoencoder.

    The model holds no RNG state after construction; training randomness comes from the
    ``rng`` argument of :meth:`loss`.

    Args:
        cfg: Model config.
        rngs: Initialization RNGs (used only here).
    """

    def __init__(self, cfg: CodecModelConfig, rngs: nnx.Rngs):
        self.config = cfg
        embed = TokenEmbedding(cfg.vocab_size, cfg.d_model, dtype=compute_dtype(cfg), rngs=rngs)
        self.encoder = SentenceEncoder(cfg, embed, rngs)
        self.decoder = SentenceDecoder(cfg, embed, rngs)

    def encode(self, tokens: jax.Array) -> jax.Array:
        """Inference encoding: tokens [B, L] -> concept vectors [B, D] float32, deterministic
        (a variational codec's posterior mean: no sampling, no latent dropout)."""
        return self.encoder(tokens)

    def loss(
        self, batch: dict[str, jax.Array], rng: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Denoising autoencoder loss.

        The encoder reads a corrupted copy of each sentence, Gaussian noise of random relative
        norm is added to its vector, and the decoder reconstructs the clean sentence
        (label-smoothed cross-entropy, averaged over target tokens).

        The options of CALM's recipe (each off by default, then the loss is exactly the one
        above): ``token_replace_prob`` replaces input tokens after the mask/drop corruption;
        ``variational`` decodes a sample ``mean + sigma * eps`` of ``q(z|x)`` instead of the
        mean and adds ``kl_weight * sum(KL) / target tokens`` (the free-bits KL of
        :func:`gaussian_kl`, per sentence). Dividing by the target tokens, like the
        cross-entropy, keeps CALM's weighting: its loss is, per latent, the cross-entropy
        summed over the tokens the latent encodes plus ``kl_weight`` times the latent's KL.
        The relative noise of ``concept_noise`` is then added to the sample (its norm is the
        sample's), and ``latent_dropout`` drops entries of the result.

        Args:
            batch: ``{"tokens": [B, L] int32}`` (ids, EOS, PAD...).
            rng: Key for corruption, noise and dropout.

        Returns:
            The scalar loss and metrics: ``loss``, ``nll`` (unsmoothed cross-entropy),
            ``accuracy`` (teacher-forced next-token), ``concept_norm`` (of the encoded mean),
            ``tokens`` (count of target tokens) and, when enabled, ``contrastive``, ``kl``
            (mean KL per sentence in nats, without the free-bits floor) and ``sigma`` (mean
            posterior standard deviation).
        """
        cfg = self.config
        tokens = batch["tokens"]
        k_corrupt, k_noise_scale, k_noise, k_enc, k_dec, k_clean = jax.random.split(rng, 6)
        # The recipe's draws come from a key of their own: the six above, and with the recipe
        # off the whole loss, stay what they were before it existed.
        k_replace, k_sample, k_latent = jax.random.split(jax.random.fold_in(rng, 6), 3)
        use_dropout = cfg.dropout > 0.0
        enc_in = corrupt_tokens(
            tokens,
            k_corrupt,
            denoise_prob=cfg.denoise_prob,
            mask_prob=cfg.token_mask_prob,
            drop_prob=cfg.token_drop_prob,
        )
        if cfg.token_replace_prob > 0.0:
            enc_in = replace_tokens(
                enc_in, k_replace, prob=cfg.token_replace_prob, vocab_size=cfg.vocab_size
            )
        concepts, log_var = self.encoder.posterior(enc_in, rng=k_enc if use_dropout else None)
        latent = concepts
        if log_var is not None:
            sigma = jnp.exp(0.5 * log_var)
            latent = concepts + sigma * jax.random.normal(k_sample, concepts.shape)
        scale = jax.random.uniform(k_noise_scale, (tokens.shape[0], 1)) * cfg.concept_noise
        noisy = relative_noise(latent, k_noise, scale)
        noisy = dropout(noisy, cfg.latent_dropout, k_latent)  # the identity at rate 0
        bos = jnp.full((tokens.shape[0], 1), BOS_ID, tokens.dtype)
        dec_in = jnp.concatenate([bos, tokens[:, :-1]], axis=1)
        logits = self.decoder(dec_in, noisy, rng=k_dec if use_dropout else None)

        weights = (tokens != PAD_ID).astype(jnp.float32)
        n_tokens = jnp.sum(weights)
        denom = jnp.maximum(n_tokens, 1.0)
        lse = jax.nn.logsumexp(logits, axis=-1)
        nll = lse - jnp.take_along_axis(logits, tokens[..., None], axis=-1)[..., 0]
        # Smoothing term: cross-entropy against the uniform distribution over the vocabulary.
        uniform_ce = lse - jnp.mean(logits, axis=-1)
        eps = cfg.label_smoothing
        loss = jnp.sum(((1.0 - eps) * nll + eps * uniform_ce) * weights) / denom
        correct = (jnp.argmax(logits, axis=-1) == tokens).astype(jnp.float32)
        metrics = {
            "nll": jnp.sum(nll * weights) / denom,
            "accuracy": jnp.sum(correct * weights) / denom,
            "concept_norm": jnp.mean(jnp.linalg.norm(concepts, axis=-1)),
            "tokens": n_tokens,
        }
        if log_var is not None:
            kl = gaussian_kl(concepts, log_var, cfg.kl_free_bits)
            loss = loss + cfg.kl_weight * jnp.sum(kl) / denom
            metrics["kl"] = jnp.mean(gaussian_kl(concepts, log_var))
            metrics["sigma"] = jnp.mean(sigma)
        if cfg.contrastive_weight > 0.0:
            clean = self.encoder(tokens, rng=k_clean if use_dropout else None)
            contrastive = info_nce(concepts, clean, cfg.contrastive_temperature)
            loss = loss + cfg.contrastive_weight * contrastive
            metrics["contrastive"] = contrastive
        metrics["loss"] = loss
        return loss, metrics


def info_nce(a: jax.Array, b: jax.Array, temperature: float) -> jax.Array:
    """Symmetric in-batch InfoNCE between matching rows of ``a`` and ``b`` [B, D]."""
    a = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-6)
    b = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), 1e-6)
    sim = a @ b.T / temperature
    labels = jnp.arange(a.shape[0])
    ce_ab = -jnp.mean(jax.nn.log_softmax(sim, axis=1)[labels, labels])
    ce_ba = -jnp.mean(jax.nn.log_softmax(sim, axis=0)[labels, labels])
    return 0.5 * (ce_ab + ce_ba)

"""Quant-LCM (paper section 2.4): predict the residual-quantization units of the next concept.

Concepts are coded by fixed residual codebooks (:mod:`lcm.models.rvq`, ``K`` codebooks of
``V`` units). A causal Transformer over the quantized concepts gives a context vector ``h_t``;
a small *depth* network then predicts the units of concept ``t + 1`` one codebook at a time,
each conditioned on ``h_t`` and on the partial reconstruction from the units already chosen
(teacher-forced in training, so all ``K`` levels train in parallel):

- Quant-LCM-d (``variant: d``): softmax over the ``V`` units of codebook ``k``, trained with
  cross-entropy;
- Quant-LCM-c (``variant: c``): regress the continuous residual that codebook ``k`` has to
  explain (MSE); a unit is then sampled by a softmax over negative squared distances between
  the predicted residual and the units.

The generated concept is the sum of the chosen units.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcm.data.concepts import ConceptDataConfig, load_concepts
from lcm.models.base_lcm import next_concept_targets
from lcm.models.common import causal_segment_mask, masked_mean, position_keys
from lcm.models.config import TransformerConfig
from lcm.models.family import concept_task
from lcm.models.layers import causal_transformer, prenet
from lcm.models.protocols import Batch, SamplingOptions
from lcm.models.rvq import (
    fit_rvq,
    reconstruction_errors,
    rvq_decode,
    rvq_encode,
    rvq_partial_sums,
    sq_distances,
)
from lcm.nn import matmul
from lcm.nn.attention import KVCache
from lcm.nn.ffn import SwiGlu
from lcm.nn.norms import RMSNorm
from lcm.nn.params import kernel_init, param

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class QuantConfig:
    """Model section of the ``quant_lcm`` task.

    Attributes:
        variant: "d" (cross-entropy over units) or "c" (regress the residual).
        d_model: Transformer width.
        rope_base: RoPE base.
        decoder: The causal Transformer.
        num_codebooks: K.
        codebook_size: V.
        depth_mlp_dim: SwiGLU width of the depth network (it runs K times per concept).
        codebooks: An ``.npz`` with ``codebooks [K, V, D]`` fitted on normalized concepts
            (``lcm.models.rvq.fit_rvq``); empty: fit them on the training data when the
            model is built.
        kmeans_sample: Vectors of the training data the codebooks are fitted on.
        kmeans_iters: Lloyd iterations per codebook.
    """

    variant: Literal["d", "c"] = "d"
    d_model: int = 256
    rope_base: float = 10000.0
    decoder: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)
    num_codebooks: int = 8
    codebook_size: int = 256
    depth_mlp_dim: int = 512
    codebooks: str = ""
    kmeans_sample: int = 100_000
    kmeans_iters: int = 20


class Codebooks(nnx.Variable):
    """Residual codebooks [K, V, D]: fitted before training, never trained."""


class QuantState(NamedTuple):
    """Generation state.

    Attributes:
        caches: KV caches of the context.
        last: [B, d_model] the context vector after the last concept.
        length: Slots filled, padding included (scalar int32).
        first: [B] int32, the first real slot of each left-padded row.
    """

    caches: list[KVCache]
    last: jax.Array
    length: jax.Array
    first: jax.Array


class QuantLCM(nnx.Module):
    """Causal Transformer over quantized concepts + a codebook-by-codebook unit predictor.

    Args:
        cfg: Model config.
        codebooks: [K, V, D] fitted residual codebooks (D from the data).
        rngs: Initialization RNGs.
    """

    def __init__(self, cfg: QuantConfig, codebooks: np.ndarray, rngs: nnx.Rngs):
        k, v, d = codebooks.shape
        if (k, v) != (cfg.num_codebooks, cfg.codebook_size):
            raise ValueError(
                f"codebooks of shape {codebooks.shape} do not match num_codebooks="
                f"{cfg.num_codebooks}, codebook_size={cfg.codebook_size}"
            )
        self.concept_dim = d
        self.variant = cfg.variant
        self.codebooks = Codebooks(jnp.asarray(codebooks, jnp.float32))
        width = cfg.d_model
        self.prenet = prenet(d, width, rngs)
        self.decoder = causal_transformer(width, cfg.decoder, cfg.rope_base, rngs)
        self.depth_in = prenet(d, width, rngs)
        self.depth_embed = param(
            nnx.initializers.normal(0.02)(rngs.params(), (k, width)), (None, "embed")
        )
        self.depth_norm = RMSNorm(width)
        self.depth_ffn = SwiGlu(width, cfg.depth_mlp_dim, rngs=rngs)
        self.out_norm = RMSNorm(width)
        if cfg.variant == "d":
            init = kernel_init(batch_axis=(0,))(rngs.params(), (k, width, v))
            self.unit_logits = param(init, (None, "embed", "vocab"))
        else:
            self.residual_out = matmul.dense(width, d, ("embed", "concept"), rngs=rngs)

    def quantize(self, x: jax.Array) -> jax.Array:
        """RVQ reconstruction of concepts ``[..., D]`` (what the model reads and writes)."""
        books = self.codebooks[...]
        return rvq_decode(rvq_encode(x, books), books)

    def _context(self, batch: Batch, rng: jax.Array | None = None) -> jax.Array:
        """Context vectors ``h_t`` of the quantized concepts: [B, T, d_model]."""
        mask = causal_segment_mask(batch["segment_ids"])
        x = self.prenet(self.quantize(batch["concepts"]))
        return self.decoder(x, mask, batch["positions"], rng)

    def _depth(self, h: jax.Array, partial: jax.Array, level: jax.Array) -> jax.Array:
        """Depth features for choosing a unit.

        Args:
            h: Context vectors [..., d_model].
            partial: Reconstruction so far [..., D].
            level: Codebook embedding(s) [d_model] (or broadcastable).

        Returns:
            [..., d_model].
        """
        z = h + self.depth_in(partial) + level
        z = z + self.depth_ffn(self.depth_norm(z))
        return self.out_norm(z)

    def loss(self, batch: Batch, rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Cross-entropy over units ("d") or residual MSE ("c"), over every codebook."""
        targets, valid = next_concept_targets(batch)
        books = self.codebooks[...]
        codes = rvq_encode(targets, books)  # [B, T, K]
        partial = rvq_partial_sums(codes, books)  # [B, T, K, D]
        g = self._depth(self._context(batch, rng)[:, :, None, :], partial, self.depth_embed[...])
        tokens = jnp.sum(valid).astype(jnp.float32)
        if self.variant == "d":
            logits = jnp.einsum("btkd,kdv->btkv", g, self.unit_logits[...])
            logp = jax.nn.log_softmax(logits, axis=-1)
            nll = -jnp.take_along_axis(logp, codes[..., None], axis=-1)[..., 0]
            loss = masked_mean(jnp.mean(nll, axis=-1), valid)
            hit = jnp.argmax(logits, axis=-1) == codes
            return loss, {
                "ce": loss,
                "unit_accuracy": masked_mean(jnp.mean(hit, axis=-1), valid),
                "tokens": tokens,
            }
        residual = targets[:, :, None, :] - partial
        err = self.residual_out(g) - residual
        loss = masked_mean(jnp.mean(err**2, axis=(-2, -1)), valid)
        return loss, {"mse": loss, "tokens": tokens}

    def _sample(self, h: jax.Array, keys: jax.Array, temperature: float) -> jax.Array:
        """Choose the units of the next concept codebook by codebook: [..., D].

        Args:
            h: Context vectors [..., d_model].
            keys: One PRNG key per vector [...]; codebook ``k`` uses ``fold_in(key, k)``.
            temperature: Softmax temperature; 0 picks the best unit.
        """
        books = self.codebooks[...]
        partial = jnp.zeros((*h.shape[:-1], self.concept_dim), h.dtype)
        for k in range(books.shape[0]):
            g = self._depth(h, partial, self.depth_embed[k])
            if self.variant == "d":
                scores = g @ self.unit_logits[k]
            else:
                scores = -sq_distances(self.residual_out(g), books[k])
            if temperature == 0.0:
                unit = jnp.argmax(scores, axis=-1)
            else:
                level_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys.reshape(-1), k)
                flat = scores.reshape(-1, scores.shape[-1]) / temperature
                unit = jax.vmap(jax.random.categorical)(level_keys, flat).reshape(scores.shape[:-1])
            partial = partial + books[k][unit]
        return partial

    def predict_next(self, batch: Batch, rng: jax.Array, options: SamplingOptions) -> jax.Array:
        """Sample concept ``t + 1`` at every position ``t``: [B, T, D]."""
        keys = position_keys(rng, batch["positions"] + 1)
        return self._sample(self._context(batch), keys, options.temperature)

    def start(self, prompt: jax.Array, max_len: int, first: jax.Array | None = None) -> QuantState:
        """Encode ``prompt`` [B, P, D] with KV caches sized for ``max_len`` concepts.

        ``first`` [B]: rows are left-padded, row ``b``'s prompt starts at slot ``first[b]``.
        """
        first = jnp.zeros(prompt.shape[0], jnp.int32) if first is None else first
        caches = self.decoder.init_cache(prompt.shape[0], max_len)
        x = self.prenet(self.quantize(prompt))
        h, caches = self.decoder.decode(x, caches, jnp.int32(0), first, last_only=True)
        return QuantState(caches, h[:, -1], jnp.int32(prompt.shape[1]), first)

    def next_concept(
        self, state: QuantState, rng: jax.Array, options: SamplingOptions
    ) -> jax.Array:
        """Sample the concept after the context: [B, D]."""
        keys = position_keys(rng, state.length - state.first)
        return self._sample(state.last, keys, options.temperature)

    def extend(self, state: QuantState, concept: jax.Array) -> QuantState:
        """Append ``concept`` [B, D] (quantized first) to the context."""
        x = self.prenet(self.quantize(concept[:, None]))
        h, caches = self.decoder.decode(x, state.caches, state.length, state.first)
        return QuantState(caches, h[:, 0], state.length + 1, state.first)


@functools.lru_cache(maxsize=4)
def quant_codebooks(model: QuantConfig, data: ConceptDataConfig) -> np.ndarray:
    """The RVQ codebooks ``[K, V, D]`` of a Quant-LCM: loaded, or fitted on the training data.

    Fitting is deterministic (a fixed evenly spaced sample, seeded k-means) and runs eagerly
    even when called while the trainer traces the model's initialization.
    """
    if model.codebooks:
        with np.load(model.codebooks, allow_pickle=False) as z:
            return z["codebooks"].astype(np.float32)
    vectors = load_concepts(data).vectors
    sample = vectors[:: max(1, len(vectors) // model.kmeans_sample)][: model.kmeans_sample]
    with jax.ensure_compile_time_eval():
        books = fit_rvq(sample, model.num_codebooks, model.codebook_size, iters=model.kmeans_iters)
        errors = reconstruction_errors(jnp.asarray(sample), jnp.asarray(books))
    # A sample too small for V units overfits (centroids of a few points each) and codes
    # unseen concepts badly: the per-level error on the sample is worth a look.
    log.info(
        "fitted %d x %d RVQ codebooks on %d concepts; MSE per level %s (variance %.4f)",
        model.num_codebooks,
        model.codebook_size,
        len(sample),
        np.round(errors, 4).tolist(),
        float(sample.var(axis=0).mean()),
    )
    return books


def _network(cfg: QuantConfig, dim: int, rngs: nnx.Rngs) -> QuantLCM:
    # Codebooks are model variables: placeholders here, the stored ones replace them.
    return QuantLCM(cfg, np.zeros((cfg.num_codebooks, cfg.codebook_size, dim), np.float32), rngs)


def _build(model: QuantConfig, data: ConceptDataConfig, rngs: nnx.Rngs) -> QuantLCM:
    return QuantLCM(model, quant_codebooks(model, data), rngs)


TASK = concept_task("quant_lcm", QuantConfig, _network, build_model=_build)

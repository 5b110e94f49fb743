"""The likelihood LCM (SONAR-LLM, arXiv 2508.05305): a Base-LCM trained through the decoder.

The network is the Base-LCM's (``PreNet`` -> causal Transformer -> ``PostNet``, one
deterministic next concept per position), and so is generation. Only the objective differs:
instead of the squared distance to the next concept, the loss is the token cross-entropy of
the *next sentence*, scored by the codec's frozen decoder reading the predicted concept
(teacher-forced, :func:`encoders.model.token_log_likelihood`). A prediction is then pulled
toward a point the decoder turns into that sentence, not toward the mean of the plausible
next concepts, which no sentence maps to. An optional ``mse_weight`` adds the Base-LCM loss.

The decoder is held by a :class:`SentenceScorer` as :class:`~lcm.nn.frozen.Frozen` variables:
the trainer never differentiates or updates them, so the concept space does not move. A
model directory stores the backbone only (the scorer is a training-time part).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from encoders.model import token_log_likelihood
from encoders.tokenizer import PAD_ID
from lcm.data.concepts import concept_normalizer
from lcm.data.sentence_targets import SentenceTargetDataConfig, SentenceTargetSource
from lcm.models.base_lcm import BaseLCM, next_concept_targets
from lcm.models.common import regression_loss
from lcm.models.config import TransformerConfig
from lcm.models.family import concept_export, scoring_codec
from lcm.models.protocols import Batch
from lcm.nn.frozen import Frozen, freeze
from trainers.task import DataContext, Task


@dataclasses.dataclass(frozen=True)
class LikelihoodLCMConfig:
    """Model section of the ``likelihood_lcm`` family.

    Attributes:
        d_model: Transformer width.
        rope_base: RoPE base.
        decoder: The causal Transformer.
        codec: The codec whose frozen decoder scores the predictions: "default" or a model
            directory (ours or a converted SONAR one). Its space must be the data's.
        mse_weight: Weight of the Base-LCM's MSE term added to the token cross-entropy.
    """

    d_model: int = 256
    rope_base: float = 10000.0
    decoder: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)
    codec: str = "default"
    mse_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.mse_weight >= 0.0:
            raise ValueError(f"mse_weight must be >= 0, got {self.mse_weight}")


class SentenceScorer(nnx.Module):
    """A frozen codec decoder that scores normalized concepts against token ids.

    Args:
        decoder: The codec's decoder module (its parameters become :class:`Frozen`).
        prefix: The ids the decoder starts from (``Codec.decoder_prefix``).
        center: [D] the normalizer's center.
        scale: [D] the normalizer's scale.
    """

    def __init__(
        self, decoder: nnx.Module, prefix: Sequence[int], center: np.ndarray, scale: np.ndarray
    ):
        self.decoder = freeze(decoder)
        self.prefix = tuple(int(i) for i in prefix)
        self.center = Frozen(jnp.asarray(center, jnp.float32))
        self.scale = Frozen(jnp.asarray(scale, jnp.float32))

    def __call__(self, concepts: jax.Array, targets: jax.Array) -> jax.Array:
        """Per-token log-probabilities [N, L] of ``targets`` [N, L] given normalized
        ``concepts`` [N, D] (denormalized into the codec's space first)."""
        raw = concepts.astype(jnp.float32) * self.scale.get_value() + self.center.get_value()
        return token_log_likelihood(self.decoder, raw, targets, self.prefix)


class LikelihoodLCM(BaseLCM):
    """The Base-LCM network with a likelihood loss.

    Its predictions are trained to *decode* to the next sentence, not to lie near its
    concept: consecutive predictions can be close by cosine while decoding to different
    sentences, and the end of a text is a prediction that decodes to "End of text.". So the
    pipeline decodes each prediction at once and feeds back the encoding of its sentence
    (:attr:`feeds_back_sentences`, as SONAR-LLM generates); it also stops a document on the
    decoded text (:attr:`stops_on_decoded_text`).

    Args:
        cfg: Model config.
        concept_dim: D.
        rngs: Initialization RNGs.
        scorer: The frozen decoder (training only; ``None`` for inference).
    """

    def __init__(
        self,
        cfg: LikelihoodLCMConfig,
        concept_dim: int,
        rngs: nnx.Rngs,
        scorer: SentenceScorer | None = None,
    ):
        super().__init__(cfg, concept_dim, rngs)
        self.mse_weight = cfg.mse_weight
        self.stops_on_decoded_text = True
        self.feeds_back_sentences = True
        self.scorer = scorer

    def loss(self, batch: Batch, rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Token cross-entropy of the next sentences (+ ``mse_weight`` x the MSE).

        ``batch`` adds ``target_positions [B, K]`` and ``target_tokens [B, K, L]`` to the
        concept batch (:mod:`lcm.data.sentence_targets`). The cross-entropy is the mean over
        the target tokens; ``tokens`` counts scored sentences.
        """
        if self.scorer is None:
            raise ValueError("this likelihood LCM has no scorer: it was built for inference")
        predictions = self(batch, rng)  # [B, T, D]
        positions, tokens = batch["target_positions"], batch["target_tokens"]
        b, k, length = tokens.shape
        picked = jnp.take_along_axis(predictions, positions[..., None], axis=1)  # [B, K, D]
        logp = self.scorer(picked.reshape(b * k, -1), tokens.reshape(b * k, length))
        real = tokens != PAD_ID
        n_tokens = jnp.sum(real).astype(jnp.float32)
        nll = -jnp.sum(logp) / jnp.maximum(n_tokens, 1.0)
        targets, valid = next_concept_targets(batch)
        mse, metrics = regression_loss(predictions.astype(jnp.float32) - targets, valid)
        loss = nll + self.mse_weight * mse if self.mse_weight else nll
        sentences = jnp.sum(real[..., 0]).astype(jnp.float32)
        sentence_nll = -jnp.sum(logp) / jnp.maximum(sentences, 1.0)
        return loss, {
            **metrics,
            "nll": nll,
            "sentence_nll": sentence_nll,
            "target_tokens": n_tokens,
            "tokens": sentences,
        }

    def for_inference(self) -> LikelihoodLCM:
        """A copy without the scorer: what a model directory stores."""
        model = nnx.clone(self)
        model.scorer = None
        return model


def _build_likelihood(
    model: LikelihoodLCMConfig, data: SentenceTargetDataConfig, rngs: nnx.Rngs
) -> LikelihoodLCM:
    codec = scoring_codec(model.codec)
    normalizer = concept_normalizer(data)
    if codec.dim != normalizer.dim:
        raise ValueError(
            f"model.codec {model.codec!r} has D={codec.dim} but the data's normalizer has "
            f"D={normalizer.dim}: the concepts must be in the scoring codec's space"
        )
    scorer = SentenceScorer(
        codec.model.decoder, codec.decoder_prefix, normalizer.center, normalizer.scale
    )
    return LikelihoodLCM(model, normalizer.dim, rngs, scorer=scorer)


def _likelihood_source(
    data: SentenceTargetDataConfig, model: LikelihoodLCMConfig, ctx: DataContext
) -> SentenceTargetSource:
    return SentenceTargetSource(
        data,
        tokenize=scoring_codec(model.codec).target_ids,
        batch_size=ctx.batch_size,
        seed=ctx.seed,
        process_index=ctx.process_index,
        process_count=ctx.process_count,
    )


TASK = Task(
    name="likelihood_lcm",
    model_config=LikelihoodLCMConfig,
    data_config=SentenceTargetDataConfig,
    build_model=_build_likelihood,
    build_data=_likelihood_source,
    export=concept_export("likelihood_lcm"),
    # For a model directory: no scorer (the decoder belongs to the codec).
    build_network=lambda cfg, dim, rngs: LikelihoodLCM(cfg, dim, rngs),
)

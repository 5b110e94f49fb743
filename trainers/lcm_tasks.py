"""The LCM families (and the token-level peer) as trainer tasks; the concept size D always
comes from the data."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import encoders
from lcm.config import to_dict
from lcm.data.concepts import (
    ConceptDataConfig,
    ConceptSource,
    concept_normalizer,
    eot_vector,
    load_concepts,
)
from lcm.data.sentence_targets import SentenceTargetDataConfig, SentenceTargetSource
from lcm.data.tasks import TASK_MARKERS
from lcm.data.token_tasks import TokenTaskDataConfig, TokenTaskSource
from lcm.models.directory import FAMILIES, LCMDirConfig, save_lcm
from lcm.models.likelihood_lcm import LikelihoodLCM, LikelihoodLCMConfig, SentenceScorer
from lcm.models.quant import QuantConfig, QuantLCM
from lcm.models.rvq import fit_rvq, reconstruction_errors
from lcm.models.token_lm import TokenLM, TokenLMConfig, save_token_lm
from trainers.task import DataContext, Task

log = logging.getLogger(__name__)


def concept_source(data: ConceptDataConfig, model: object, ctx: DataContext) -> ConceptSource:
    """The batch source of every concept task (``model`` is unused: D comes from the data)."""
    del model
    return ConceptSource(
        data,
        batch_size=ctx.batch_size,
        seed=ctx.seed,
        process_index=ctx.process_index,
        process_count=ctx.process_count,
    )


def concept_dim(data: ConceptDataConfig) -> int:
    """D of the concepts the model will see."""
    return load_concepts(data).dim


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


def _export(family: str) -> Callable[[nnx.Module, Any, ConceptDataConfig, str], None]:
    """The ``export`` of a family: a model directory (:mod:`lcm.models.directory`)."""

    def export(model: nnx.Module, model_cfg: Any, data: ConceptDataConfig, out_dir: str) -> None:
        eot = eot_vector(data)
        if eot is None:
            raise ValueError("a model directory needs an end-of-text concept (data.eot is none)")
        normalizer = concept_normalizer(data)
        if isinstance(model, LikelihoodLCM):
            model = model.for_inference()  # the frozen decoder belongs to the codec
        n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        config = LCMDirConfig(
            family=family,
            concept_dim=normalizer.dim,
            max_seq_len=data.max_seq_len,
            model=to_dict(model_cfg),
            markers=dict(TASK_MARKERS),
            codec=data.shards or "synthetic",
        )
        card = (
            f"# {family} (lcm-jax)\n\n- {n_params:,} parameters, D = {normalizer.dim}, context "
            f"{data.max_seq_len} concepts\n- data: `{data.shards or 'synthetic'}` "
            f"(split {data.split})\n"
        )
        save_lcm(out_dir, model, config, normalizer, eot, card)

    return export


def _build_quant(model: QuantConfig, data: ConceptDataConfig, rngs: nnx.Rngs) -> QuantLCM:
    return QuantLCM(model, quant_codebooks(model, data), rngs)


def _family_task(family: str, build_model: Callable[..., nnx.Module] | None = None) -> Task:
    """The trainer task of an LCM family of :data:`~lcm.models.directory.FAMILIES`."""
    model_config, build = FAMILIES[family]

    def build_with_data_dim(model: Any, data: ConceptDataConfig, rngs: nnx.Rngs) -> nnx.Module:
        return build(model, concept_dim(data), rngs)

    return Task(
        name=family,
        model_config=model_config,
        data_config=ConceptDataConfig,
        build_model=build_model or build_with_data_dim,
        build_data=concept_source,
        export=_export(family),
    )


BASE_LCM = _family_task("base_lcm")
TWO_TOWER = _family_task("two_tower")
ONE_TOWER = _family_task("one_tower")
QUANT_LCM = _family_task("quant_lcm", build_model=_build_quant)


@functools.lru_cache(maxsize=2)
def scoring_codec(name: str) -> encoders.Codec:
    """The codec of a likelihood LCM (loaded once per process: model and data both use it)."""
    return encoders.load(name)


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


LIKELIHOOD_LCM = Task(
    name="likelihood_lcm",
    model_config=LikelihoodLCMConfig,
    data_config=SentenceTargetDataConfig,
    build_model=_build_likelihood,
    build_data=_likelihood_source,
    export=_export("likelihood_lcm"),
)


def _build_token_lm(model: TokenLMConfig, data: TokenTaskDataConfig, rngs: nnx.Rngs) -> TokenLM:
    vocab = scoring_codec(model.codec).tokenizer.vocab_size
    if vocab != model.vocab_size:
        raise ValueError(
            f"model.vocab_size is {model.vocab_size} but the tokenizer of codec "
            f"{model.codec!r} has {vocab} ids"
        )
    return TokenLM(model, rngs)


def _token_source(
    data: TokenTaskDataConfig, model: TokenLMConfig, ctx: DataContext
) -> TokenTaskSource:
    return TokenTaskSource(
        data,
        tokenize=scoring_codec(model.codec).tokenizer.encode,
        batch_size=ctx.batch_size,
        seed=ctx.seed,
        process_index=ctx.process_index,
        process_count=ctx.process_count,
    )


def _export_token_lm(
    model: nnx.Module, model_cfg: TokenLMConfig, data: TokenTaskDataConfig, out_dir: str
) -> None:
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    card = (
        f"# token_lm (lcm-jax): the token-level peer\n\n- {n_params:,} parameters, rows of "
        f"{data.max_len} tokens, the tokenizer of codec `{model_cfg.codec}`\n- data: "
        f"`{data.pairs}` (split {data.split}, plain documents: {data.plain})\n"
    )
    save_token_lm(out_dir, model, model_cfg, TASK_MARKERS, card)


TOKEN_LM = Task(
    name="token_lm",
    model_config=TokenLMConfig,
    data_config=TokenTaskDataConfig,
    build_model=_build_token_lm,
    build_data=_token_source,
    export=_export_token_lm,
)

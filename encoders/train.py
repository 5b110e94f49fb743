"""The codec as a trainer task (``task: codec``) and its export to a model directory.

Train with ``lcm train configs/encoders/codec_small.yaml`` after preparing the data with
``python tools/prepare_codec_data.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
from flax import nnx

from encoders.codec import Codec
from encoders.config import CodecDataConfig, CodecModelConfig
from encoders.data import CodecBatchSource
from encoders.model import CodecModel
from encoders.tokenizer import Tokenizer
from trainers.task import DataContext, Task

# Shipped model directories must stay within this size (issue: at most 40 MB on disk).
SHIP_LIMIT_BYTES = 40_000_000


def build_model(
    model_cfg: CodecModelConfig, data_cfg: CodecDataConfig, rngs: nnx.Rngs
) -> CodecModel:
    """A freshly initialized codec."""
    del data_cfg  # the vocabulary size is checked against the data by build_data
    return CodecModel(model_cfg, rngs)


def build_data(
    data_cfg: CodecDataConfig, model_cfg: CodecModelConfig, ctx: DataContext
) -> CodecBatchSource:
    """The deterministic batch source of ``data_cfg.split``."""
    return CodecBatchSource(
        data_cfg,
        model_cfg,
        batch_size=ctx.batch_size,
        seed=ctx.seed,
        process_index=ctx.process_index,
        process_count=ctx.process_count,
    )


def export(
    model: CodecModel, model_cfg: CodecModelConfig, data_cfg: CodecDataConfig, out_dir: str
) -> None:
    """Write a model directory that ``encoders.load(out_dir)`` opens.

    Weights are stored as float32, or as float16 when float32 would exceed the 40 MB limit
    of a shipped model (loaded back as float32; vectors then move by about 1e-3 relative).
    """
    data_dir = Path(os.path.expanduser(data_cfg.data_dir))
    codec = Codec(model, Tokenizer.load(data_dir / "tokenizer.model"))
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    dtype = "float32" if 4 * n_params <= SHIP_LIMIT_BYTES else "float16"
    manifest_file = data_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    codec.save(
        out_dir, card=_card(model_cfg, data_cfg, n_params, dtype, manifest), weights_dtype=dtype
    )


def _card(
    cfg: CodecModelConfig, data_cfg: CodecDataConfig, n_params: int, dtype: str, manifest: dict
) -> str:
    settings = manifest.get("settings", {})
    sentences = manifest.get("sentences", {})
    lines = [
        "# Sentence codec (lcm-jax)",
        "",
        "A SONAR-like sentence autoencoder: a Transformer encoder mean-pools each sentence into "
        f"one {cfg.concept_dim}-dim vector"
        + (" (the mean of a Gaussian posterior)" if cfg.variational else "")
        + "; a decoder cross-attends to it to rebuild the text.",
        "",
        "## Architecture",
        f"- encoder {cfg.encoder_layers} / decoder {cfg.decoder_layers} layers, d_model "
        f"{cfg.d_model}, {cfg.num_heads} heads, {cfg.ffn} MLP {cfg.mlp_dim}, {cfg.positions} "
        f"positions, {cfg.norm}",
        f"- vocabulary {cfg.vocab_size} (SentencePiece {settings.get('model_type', '?')}), "
        f"max {cfg.max_len} tokens",
        f"- {n_params:,} parameters, stored as {dtype}",
        "",
        "## Training data",
        f"- prepared data: `{data_cfg.data_dir}` from corpus `{settings.get('corpus_dir', '?')}`"
        f" and pairs `{settings.get('pairs_path')}`",
        f"- sentences: train {sentences.get('train', '?')} (mixture "
        f"{manifest.get('train_mixture', '?')}), valid {sentences.get('valid', '?')}, test "
        f"{sentences.get('test', '?')}; held-out sources: "
        f"{', '.join(settings.get('holdout_sources', [])) or 'none'}",
        "",
        "## Objective",
        _objective(cfg),
        "",
        "## Metrics",
        "- fill in: round-trip BLEU / exact match on held-out sentences, with and without "
        "noise; encode/decode sentences per second",
        "",
    ]
    return "\n".join(lines)


def _objective(cfg: CodecModelConfig) -> str:
    """The card's line on the training objective, naming only the options in use (today's
    denoising codec gets the line it always had)."""
    if cfg.variational:
        kind = "variational autoencoder (CALM's recipe)"
    else:
        kind = "denoising autoencoder"
    parts = []
    if cfg.denoise_prob > 0.0 and cfg.token_mask_prob + cfg.token_drop_prob > 0.0:
        parts.append(
            f"{cfg.denoise_prob:.0%} of inputs corrupted (mask {cfg.token_mask_prob}, drop "
            f"{cfg.token_drop_prob})"
        )
    else:
        parts.append("no input tokens masked or dropped")
    if cfg.token_replace_prob > 0.0:
        parts.append(f"{cfg.token_replace_prob:.0%} of input tokens replaced by random ones")
    if cfg.variational:
        parts.append(
            f"decoding a sample of the posterior (KL weight {cfg.kl_weight:g}, free bits "
            f"{cfg.kl_free_bits:g} nats per dimension; encoding returns its mean)"
        )
    if cfg.concept_noise > 0.0 or not cfg.variational:
        parts.append(f"concept noise up to relative norm {cfg.concept_noise}")
    if cfg.latent_dropout > 0.0:
        parts.append(f"latent dropout {cfg.latent_dropout}")
    parts.append(f"label smoothing {cfg.label_smoothing}")
    parts.append(f"contrastive weight {cfg.contrastive_weight}")
    return f"- {kind}: " + ", ".join(parts)


TASK = Task(
    name="codec",
    model_config=CodecModelConfig,
    data_config=CodecDataConfig,
    build_model=build_model,
    build_data=build_data,
    export=export,
)

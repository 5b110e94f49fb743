"""Outputs of the shipped models and of every family's network, recorded before a refactor.

``python tests/recorded_outputs.py`` writes ``tests/fixtures/recorded_outputs.npz``;
``tests/test_recorded_outputs.py`` recomputes everything and compares. Recorded once, on
2026-12-03 at commit 84ac424, before the layering refactor of the code (one block, one
attention, one beam search): a refactor must leave

- the shipped codec's vectors and sentences (greedy and beam) and the shipped LCM's
  summaries and expansions unchanged;
- every family's parameter paths and shapes unchanged (old checkpoints keep loading);
- every family's loss and predictions, with fixed random weights, unchanged.

Rerun the script only for a change that is meant to alter outputs, and say so in its commit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from lcm_helpers import random_model
from test_lcm_models import NETWORKS, OPTIONS, build, docs_batch

import encoders
from lcm import Pipeline
from lcm.models.config import TransformerConfig
from lcm.models.rvq import fit_rvq
from lcm.models.token_lm import TokenLM, TokenLMConfig

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixtures" / "recorded_outputs.npz"

# Written for this file (in no training data), in the styles the shipped models know.
SENTENCES = [
    "The package provides a command line tool for converting images.",
    "She walked to the window and looked at the garden.",
    "This library parses configuration files written in YAML.",
    "He had never seen such a beautiful morning.",
]
DOCUMENTS = [
    "Fastlog is a viewer for very large log files. It opens files of many gigabytes at once "
    "and filters their lines by regular expressions. Colours mark warnings and errors.",
    "This package contains the Python 3 bindings for a small image library. They read and "
    "write PNG and JPEG files and can resize them.",
]
SUMMARIES = ["interactive viewer for large log files", "Python bindings for image conversion"]


def _param_shapes(model: nnx.Module) -> dict[str, list[int]]:
    """Every variable's path -> shape: what a checkpoint's keys must keep matching."""
    flat = nnx.to_flat_state(nnx.state(model))
    return {"/".join(map(str, path)): list(var.get_value().shape) for path, var in flat}


def compute() -> dict[str, Any]:
    """Every recorded output, as numpy arrays (texts as str arrays, shapes as JSON)."""
    out: dict[str, Any] = {}
    codec = encoders.load("default")
    vectors = codec.encode(SENTENCES)
    out["codec/vectors"] = vectors
    out["codec/greedy"] = np.array(codec.decode(vectors))
    out["codec/beam4"] = np.array(codec.decode(vectors, beam_size=4))
    out["codec/beam4_rerank"] = np.array(codec.decode(vectors, beam_size=4, rerank=True))
    shapes = {"codec": _param_shapes(codec.model)}

    pipe = Pipeline.load("default")
    out["lcm/summaries"] = np.array(pipe.summarize_many(DOCUMENTS))
    out["lcm/expansions"] = np.array(pipe.expand_many(SUMMARIES, max_sentences=4))
    beam = Pipeline.load("default", beam_size=4)
    out["lcm/expansions_beam4"] = np.array(beam.expand_many(SUMMARIES, max_sentences=4))
    shapes["lcm/default"] = _param_shapes(pipe.lcm.model)

    codebooks = fit_rvq(np.random.default_rng(0).normal(size=(256, 8)), 3, 8, iters=5)
    batch = docs_batch()
    for name in NETWORKS:
        model = build(name, codebooks)
        shapes[name] = _param_shapes(model)
        predict = nnx.jit(lambda m, b, r: m.predict_next(b, r, OPTIONS))
        out[f"{name}/predict_next"] = np.asarray(predict(model, batch, jax.random.key(3)))
        if name != "likelihood_lcm":  # its loss needs a codec: tests/test_likelihood_lcm.py
            value, metrics = nnx.jit(lambda m, b, r: m.loss(b, r))(model, batch, jax.random.key(4))
            out[f"{name}/loss"] = np.asarray(value)
            for key, metric in metrics.items():
                out[f"{name}/metric/{key}"] = np.asarray(metric)
    cfg = TokenLMConfig(
        d_model=32, decoder=TransformerConfig(num_layers=2, num_heads=2, mlp_dim=64), vocab_size=512
    )
    model = random_model(lambda: TokenLM(cfg, nnx.Rngs(1)))
    shapes["token_lm"] = _param_shapes(model)
    tokens = jax.random.randint(jax.random.key(0), (2, 12), 5, 512)
    rows = {
        "tokens": tokens,
        "segment_ids": np.ones((2, 12), np.int32),
        "positions": np.broadcast_to(np.arange(12, dtype=np.int32), (2, 12)),
    }
    out["token_lm/logits"] = np.asarray(nnx.jit(lambda m, b: m(b))(model, rows))
    out["param_shapes"] = np.array(json.dumps(shapes, sort_keys=True))
    return out


if __name__ == "__main__":
    outputs = compute()
    tmp = FIXTURE.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **outputs)
    tmp.replace(FIXTURE)
    print(f"wrote {len(outputs)} outputs to {FIXTURE}")

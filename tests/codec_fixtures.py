"""Shared, cached builders for the codec tests: tiny prepared data and a tiny overfitted codec.

Both are built once per test session (they take a few seconds) from the committed fixtures,
never from ``../shared``.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx

from encoders.codec import Codec
from encoders.config import CodecModelConfig
from encoders.data import prepare
from encoders.model import CodecModel
from encoders.tokenizer import EOS_ID, Tokenizer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VOCAB = 512
# Sentences the tiny codec memorizes (plain ASCII, 4 to 12 words).
MEMORIZED = [
    "The cat sat on the mat.",
    "Emma was handsome, clever, and rich.",
    "A package of tools for the command line.",
    "In the beginning God created the heavens and the earth.",
    "She laughed and walked away.",
    "Install the package with pip.",
]


def tiny_model_config(**overrides: object) -> CodecModelConfig:
    """A codec small enough to train in seconds."""
    base = dict(
        vocab_size=VOCAB,
        d_model=64,
        num_heads=2,
        encoder_layers=1,
        decoder_layers=2,
        mlp_dim=128,
        concept_dim=32,
        max_len=48,
    )
    return CodecModelConfig(**{**base, **overrides})


@functools.cache
def prepared_data() -> Path:
    """Codec data (tokenizer + token arrays) prepared from the committed fixture corpus."""
    out = Path(tempfile.mkdtemp(prefix="codec_test_data_"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    prepare(
        str(FIXTURES),
        str(out),
        pairs_path=str(FIXTURES / "pairs_small.jsonl.gz"),
        vocab_size=VOCAB,
        valid_fraction=0.1,
        test_fraction=0.1,
        holdout_sources=("devil",),
    )
    return out


def batch_of(tokenizer: Tokenizer, sentences: list[str], width: int) -> np.ndarray:
    """[N, width] int32 tokens: ids, EOS, PAD."""
    out = np.zeros((len(sentences), width), np.int32)
    for row, ids in enumerate(tokenizer.encode(sentences)):
        out[row, : len(ids)] = ids
        out[row, len(ids)] = EOS_ID
    return out


def train(model: CodecModel, tokens: np.ndarray, steps: int, lr: float = 3e-3) -> list[float]:
    """Plain optax loop on one fixed batch; returns the loss of every step."""
    graphdef, params = nnx.split(model, nnx.Param)
    opt = optax.adam(lr)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, key):
        def loss_fn(p):
            return nnx.merge(graphdef, p).loss({"tokens": tokens}, key)

        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i in range(steps):
        params, opt_state, loss = step(params, opt_state, jax.random.key(i))
        losses.append(loss)
    nnx.update(model, params)
    return [float(x) for x in losses]


@functools.cache
def overfitted_codec() -> Codec:
    """A tiny codec trained to reproduce :data:`MEMORIZED` exactly."""
    tokenizer = Tokenizer.load(prepared_data() / "tokenizer.model")
    cfg = tiny_model_config(denoise_prob=0.0, concept_noise=0.0, label_smoothing=0.0)
    model = CodecModel(cfg, nnx.Rngs(0))
    train(model, batch_of(tokenizer, MEMORIZED, 32), steps=80, lr=1e-2)
    return Codec(model, tokenizer, batch_size=8)

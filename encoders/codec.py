"""The codec inference API: ``load(name_or_path)`` and :class:`Codec` (encode / decode).

Inputs are sorted by length and padded to a few bucket lengths and batch sizes, so the jitted
encoder and decoder compile once per (bucket, batch size) and a later call with similar
lengths reuses them.

Input rules:
    * ``encode``: every item must be a ``str`` with some non-whitespace text; an empty or
      whitespace-only string raises ``ValueError`` naming its index (there is no meaningful
      vector for "no sentence"). A sentence longer than ``config.max_len - 1`` tokens is
      truncated to that many tokens (one warning per call says how many were).
    * ``decode``: vectors must form a finite real array of shape ``[N, D]``; anything else
      raises ``ValueError`` naming the problem. Generation stops at EOS or after ``max_len``
      tokens (default and upper limit: ``config.max_len``).

Model directory format (what ``load`` opens and ``Codec.save`` writes): ``config.yaml`` (the
:class:`CodecModelConfig` fields), ``weights.npz`` (flat ``"path/to/param" -> array``),
``tokenizer.model`` (SentencePiece) and ``card.md`` (how it was made and how good it is).
"""

from __future__ import annotations

import functools
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from encoders.config import CodecModelConfig
from encoders.generate import beam_search, greedy_search
from encoders.model import CodecModel
from encoders.tokenizer import EOS_ID, Tokenizer
from lcm.config import ConfigError, from_dict, read_yaml, save_yaml
from lcm.io import write_bytes_atomic

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "weights.npz"
TOKENIZER_FILE = "tokenizer.model"
CARD_FILE = "card.md"
DEFAULT_DIR = Path(__file__).resolve().parent / "default"

# Padded lengths and batch sizes: each (length, batch) pair compiles once per process. Steps
# of 4 tokens up to 32 keep the padding of a typical corpus near 20% (30% with steps of 8).
LENGTH_BUCKETS = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256)
BATCH_SIZES = (1, 8, 32, 64)


def _ladder(sizes: Sequence[int], top: int) -> tuple[int, ...]:
    """``sizes`` below ``top``, then ``top``: the allowed padded sizes up to a maximum."""
    return tuple(sorted({s for s in sizes if s < top} | {top}))


def _fit(ladder: tuple[int, ...], n: int) -> int:
    """Smallest entry of ``ladder`` that holds ``n``."""
    return next(s for s in ladder if s >= n)


def _encode_impl(graphdef: nnx.GraphDef, state: nnx.State, tokens: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, state).encode(tokens)


def _generate_impl(
    graphdef: nnx.GraphDef, state: nnx.State, concepts: jax.Array, max_len: int, beam_size: int
) -> jax.Array:
    decoder = nnx.merge(graphdef, state).decoder
    if beam_size == 1:
        return greedy_search(decoder, concepts, max_len)
    return beam_search(decoder, concepts, max_len, beam_size)


class Codec:
    """Sentence <-> concept vector codec.

    Args:
        model: A (trained) codec model.
        tokenizer: Its tokenizer.
        batch_size: Most sentences per jitted call.

    Raises:
        ValueError: If the tokenizer and the model disagree on the vocabulary size.
    """

    def __init__(self, model: CodecModel, tokenizer: Tokenizer, *, batch_size: int = 128):
        if tokenizer.vocab_size != model.config.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} ids but the model config says "
                f"vocab_size={model.config.vocab_size}"
            )
        self.config: CodecModelConfig = model.config
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._graphdef, self._state = nnx.split(model)
        self._encode = jax.jit(functools.partial(_encode_impl, self._graphdef))
        self._generate = jax.jit(
            functools.partial(_generate_impl, self._graphdef),
            static_argnames=("max_len", "beam_size"),
        )
        self._lengths = _ladder(LENGTH_BUCKETS, self.config.max_len)

    @property
    def dim(self) -> int:
        """D, the size of a concept vector."""
        return self.config.concept_dim

    @property
    def model(self) -> CodecModel:
        """The underlying network (a fresh view of the same weights)."""
        return nnx.merge(self._graphdef, self._state)

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        """Encode sentences into concept vectors.

        Args:
            sentences: N strings (see the module docstring for empty and long ones).

        Returns:
            [N, D] float32, row i for ``sentences[i]``; outputs do not depend on what else is
            in the call.

        Raises:
            TypeError: If ``sentences`` is a single ``str`` or holds a non-string.
            ValueError: If a sentence is empty or whitespace only.
        """
        if isinstance(sentences, str):
            raise TypeError("encode() takes a sequence of sentences, not a single str")
        sentences = list(sentences)
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise TypeError(f"encode(): item {i} is a {type(s).__name__}, not a str")
        empty = [i for i, s in enumerate(sentences) if not s.strip()]
        if empty:
            shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
            raise ValueError(
                f"encode(): {len(empty)} empty or whitespace-only sentence(s) at index {shown}; "
                "remove them (there is no vector for 'no sentence')"
            )
        out = np.zeros((len(sentences), self.dim), np.float32)
        if not sentences:
            return out
        cap = self.config.max_len - 1
        ids = self.tokenizer.encode(sentences)
        n_long = sum(len(x) > cap for x in ids)
        if n_long:
            logger.warning("encode(): truncated %d sentence(s) to %d tokens", n_long, cap)
        lengths = np.array([min(len(x), cap) + 1 for x in ids])  # + EOS
        order = np.argsort(lengths, kind="stable")
        rows_ladder = _ladder(BATCH_SIZES, self.batch_size)
        pending = []
        # Dispatch every chunk before reading any result, so host-side padding overlaps compute.
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            shape = (_fit(rows_ladder, len(idx)), _fit(self._lengths, lengths[idx[-1]]))
            tokens = np.zeros(shape, np.int32)
            for row, i in enumerate(idx):
                seq = ids[i][:cap]
                tokens[row, : len(seq)] = seq
                tokens[row, len(seq)] = EOS_ID
            pending.append((idx, self._encode(self._state, tokens)))
        for idx, vectors in pending:
            out[idx] = np.asarray(vectors)[: len(idx)]
        return out

    def decode(
        self,
        vectors: np.ndarray | Sequence[Sequence[float]],
        *,
        beam_size: int = 1,
        max_len: int | None = None,
    ) -> list[str]:
        """Decode concept vectors into sentences.

        Args:
            vectors: [N, D] real, finite values.
            beam_size: 1 for greedy decoding, more for beam search.
            max_len: Most tokens per sentence, EOS included (default ``config.max_len``).

        Returns:
            N sentences.

        Raises:
            ValueError: For a wrong shape or dtype, non-finite values, or bad options.
        """
        vecs = self._check_vectors(vectors)
        max_len = self.config.max_len if max_len is None else max_len
        if not isinstance(beam_size, int) or beam_size < 1:
            raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
        if not isinstance(max_len, int) or not 1 <= max_len <= self.config.max_len:
            raise ValueError(
                f"max_len must be an int in [1, {self.config.max_len}], got {max_len!r}"
            )
        rows_ladder = _ladder(BATCH_SIZES, self.batch_size)
        pending = []
        for start in range(0, len(vecs), self.batch_size):
            chunk = vecs[start : start + self.batch_size]
            padded = np.zeros((_fit(rows_ladder, len(chunk)), self.dim), np.float32)
            padded[: len(chunk)] = chunk
            tokens = self._generate(self._state, padded, max_len=max_len, beam_size=beam_size)
            pending.append((len(chunk), tokens))
        seqs: list[list[int]] = []
        for n, tokens in pending:
            for row in np.asarray(tokens)[:n].tolist():
                seqs.append(row[: row.index(EOS_ID)] if EOS_ID in row else row)
        return self.tokenizer.decode(seqs)

    def _check_vectors(self, vectors: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        try:
            arr = np.asarray(vectors)
        except ValueError as e:  # ragged nested lists
            raise ValueError(f"decode(): vectors are not a rectangular array: {e}") from e
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(
                f"decode(): expected vectors of shape [N, {self.dim}], got shape {arr.shape}"
            )
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"decode(): expected real numbers, got dtype {arr.dtype}")
        with np.errstate(over="ignore"):  # too-large values become inf, reported below
            arr = arr.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        if bad.size:
            shown = ", ".join(map(str, bad[:10])) + (", ..." if bad.size > 10 else "")
            raise ValueError(
                f"decode(): {bad.size} vector(s) with NaN or infinite values (or too large for "
                f"float32) at row {shown}"
            )
        return arr

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        card: str | None = None,
        weights_dtype: Literal["float32", "float16"] = "float32",
    ) -> None:
        """Write a model directory (each file atomically: temp name, then rename).

        Args:
            path: The directory (created if needed).
            card: Model card text (markdown); a minimal one is written if None.
            weights_dtype: Storage dtype; "float16" halves the size (loaded back as float32).
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_yaml(self.config, path / CONFIG_FILE)
        params = nnx.to_flat_state(nnx.state(self.model, nnx.Param))
        arrays = {
            "/".join(map(str, p)): np.asarray(v.get_value()).astype(weights_dtype)
            for p, v in params
        }
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_bytes_atomic(path / WEIGHTS_FILE, buffer.getvalue())
        self.tokenizer.save(path / TOKENIZER_FILE)
        n_params = sum(a.size for a in arrays.values())
        write_bytes_atomic(
            path / CARD_FILE, (card or _minimal_card(self.config, n_params)).encode()
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, batch_size: int = 128) -> Codec:
        """Open a model directory, validating every file.

        Raises:
            FileNotFoundError: If the directory or one of its files is missing.
            ValueError: For an unknown or mistyped config key, missing, unexpected or
                wrongly shaped weights, or a tokenizer of another vocabulary size.
        """
        path = Path(path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"codec model directory not found: {path}")
        for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
            if not (path / name).is_file():
                raise FileNotFoundError(
                    f"{path}: missing {name} (a codec model directory holds {CONFIG_FILE}, "
                    f"{WEIGHTS_FILE}, {TOKENIZER_FILE} and {CARD_FILE})"
                )
        try:
            cfg = from_dict(CodecModelConfig, read_yaml(path / CONFIG_FILE))
        except ConfigError as e:
            raise ConfigError(f"{path / CONFIG_FILE}: {e}") from e
        tokenizer = Tokenizer.load(path / TOKENIZER_FILE)
        with np.load(path / WEIGHTS_FILE, allow_pickle=False) as npz:
            weights = {k: npz[k] for k in npz.files}
        model = build_from_weights(cfg, weights, source=str(path / WEIGHTS_FILE))
        return cls(model, tokenizer, batch_size=batch_size)


def build_from_weights(
    cfg: CodecModelConfig, weights: dict[str, np.ndarray], *, source: str = "weights"
) -> CodecModel:
    """A model of config ``cfg`` holding ``weights`` (flat ``"path/to/param"`` arrays).

    Raises:
        ValueError: Naming the first missing, unexpected or wrongly shaped parameter.
    """
    abstract = nnx.eval_shape(lambda: CodecModel(cfg, nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    flat = [("/".join(map(str, p)), p, v) for p, v in nnx.to_flat_state(state)]
    missing = [name for name, _, _ in flat if name not in weights]
    if missing:
        raise ValueError(f"{source}: missing parameter {missing[0]!r} ({len(missing)} missing)")
    unexpected = sorted(set(weights) - {name for name, _, _ in flat})
    if unexpected:
        raise ValueError(f"{source}: unexpected parameter {unexpected[0]!r} for this config")
    leaves = []
    for name, p, v in flat:
        arr = weights[name]
        expected = v.get_value()
        if arr.shape != expected.shape:
            raise ValueError(
                f"{source}: parameter {name!r} has shape {arr.shape}, the config needs "
                f"{expected.shape}"
            )
        leaves.append((p, v.replace(jnp.asarray(arr, expected.dtype))))
    return nnx.merge(graphdef, nnx.from_flat_state(leaves))


def _minimal_card(cfg: CodecModelConfig, n_params: int) -> str:
    return (
        "# Sentence codec\n\n"
        f"Encoder {cfg.encoder_layers} layers, decoder {cfg.decoder_layers} layers, "
        f"d_model {cfg.d_model}, D {cfg.concept_dim}, vocabulary {cfg.vocab_size}, "
        f"{n_params:,} parameters.\n"
    )


def load(name_or_path: str | os.PathLike[str] = "default", *, batch_size: int = 128) -> Codec:
    """Load a codec: ``"default"`` (shipped inside the package) or a model directory path.

    Raises:
        FileNotFoundError: If the default codec is not shipped yet or the path is missing.
    """
    if str(name_or_path) == "default":
        if not (DEFAULT_DIR / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"the default codec is not shipped yet ({DEFAULT_DIR} holds no model). Train "
                "one: `python tools/prepare_codec_data.py --corpus CORPUS_DIR --out "
                "~/data/codec`, then `lcm train configs/encoders/codec_small.yaml`; export it "
                "with encoders.train.export into a model directory and pass that path to "
                "encoders.load() (or place it at encoders/default/)"
            )
        return Codec.load(DEFAULT_DIR, batch_size=batch_size)
    return Codec.load(name_or_path, batch_size=batch_size)

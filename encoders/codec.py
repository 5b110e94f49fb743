"""The codec inference API: ``load(name_or_path)`` and :class:`Codec` (encode / decode).

Inputs are sorted by length and padded to a few bucket lengths and batch sizes, so the jitted
encoder and decoder compile once per (bucket, batch size) and a later call with similar
lengths reuses them. ``Codec.devices`` spreads ``encode``'s chunks over several devices.

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

import contextlib
import functools
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, get_args

import jax
import numpy as np
from flax import nnx

from encoders.config import CodecModelConfig
from encoders.generate import beam_search, greedy_search
from encoders.model import CodecModel, token_log_likelihood
from encoders.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from lcm.config import ConfigError, from_dict, read_yaml, save_yaml
from lcm.io import write_bytes_atomic
from lcm.nn.weights import build_with_weights, flat_weights, load_weights, save_weights

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
# Most sentences per encoder call on CPU. Chunks of 32 length-sorted sentences pad less and keep
# the activations in cache: the shipped codec encodes 850-900 sentences/s this way on this
# project's 2-core CPU against 730/s in chunks of 128 (decoding, a loop over tokens, gains from
# larger batches and keeps ``batch_size``, as does encoding on an accelerator).
ENCODE_BATCH = 32
# Most beams (sentences x beam size) per beam-search call on CPU. Every step reorders the KV
# caches of all beams, a copy bound by memory bandwidth once the caches outgrow the CPU's
# cache: timed on 256 held-out sentences in one sitting on this project's 2-core CPU, the
# shipped codec's beam 8 decoded 12.8 sentences/s in calls of 1-4 sentences, 11.2 in calls of
# 8 and 7.2 in calls of 128.
BEAM_ROWS = 32
# Padded widths of the token history that n-gram blocking (``decode(no_repeat_ngram=...)``)
# compares against; a longer history keeps its most recent tokens.
HISTORY_WIDTHS = (0, 64, 128, 256, 512)
# Most bytes of KV cache one decoding call may hold; a single sentence's beams needing more
# is refused up front (a beam that wide would exhaust the memory in the middle of a call).
DECODE_CACHE_BYTES = 4 << 30
EncodePrecision = Literal["float32", "bfloat16"]
ENCODE_PRECISIONS: tuple[str, ...] = get_args(EncodePrecision)


def _ladder(sizes: Sequence[int], top: int) -> tuple[int, ...]:
    """``sizes`` below ``top``, then ``top``: the allowed padded sizes up to a maximum."""
    return tuple(sorted({s for s in sizes if s < top} | {top}))


def _fit(ladder: tuple[int, ...], n: int) -> int:
    """Smallest entry of ``ladder`` that holds ``n``."""
    return next(s for s in ladder if s >= n)


def check_sentences(sentences: Sequence[str]) -> list[str]:
    """The input rules of ``encode``: a sequence of non-blank strings, as a list.

    Raises:
        TypeError: If ``sentences`` is a single ``str`` or holds a non-string.
        ValueError: If a sentence is empty or whitespace only (naming its index).
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
    return sentences


def _encode_impl(graphdef: nnx.GraphDef, state: nnx.State, tokens: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, state).encode(tokens)


def _generate_impl(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    concepts: jax.Array,
    max_len: int,
    beam_size: int,
    n_best: bool = False,
    history: jax.Array | None = None,
    no_repeat_ngram: int = 0,
) -> jax.Array:
    decoder = nnx.merge(graphdef, state).decoder
    block = {"history": history, "no_repeat_ngram": no_repeat_ngram}
    if beam_size == 1 and not n_best:
        return greedy_search(decoder, concepts, max_len, **block)
    return beam_search(decoder, concepts, max_len, beam_size, n_best=n_best, **block)


def _log_likelihood_impl(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    concepts: jax.Array,
    targets: jax.Array,
    prefix: tuple[int, ...],
) -> jax.Array:
    decoder = nnx.merge(graphdef, state).decoder
    return token_log_likelihood(decoder, concepts, targets, prefix).sum(axis=-1)


def check_decoding(beam_size: int, rerank: bool, no_repeat_ngram: int = 0) -> None:
    """The rules of ``decode``'s ``beam_size``, ``rerank`` and ``no_repeat_ngram`` options.

    Raises:
        ValueError: ``beam_size`` is not a positive int, ``rerank`` with one beam, or
            ``no_repeat_ngram`` neither 0 nor an int >= 2.
    """
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
    if rerank and beam_size < 2:
        raise ValueError("rerank=True chooses among beams: it needs beam_size > 1")
    ok = isinstance(no_repeat_ngram, int) and not isinstance(no_repeat_ngram, bool)
    if not ok or no_repeat_ngram < 0 or no_repeat_ngram == 1:
        raise ValueError(f"no_repeat_ngram must be 0 (off) or an int >= 2, got {no_repeat_ngram!r}")


def check_cache_fits(row_bytes: int, beam_size: int) -> None:
    """Refuse a decoding whose KV cache for one sentence (``row_bytes``, all its beams)
    exceeds :data:`DECODE_CACHE_BYTES`.

    Raises:
        ValueError: Naming the beam size and the memory it needs.
    """
    if row_bytes > DECODE_CACHE_BYTES:
        raise ValueError(
            f"beam_size {beam_size} needs {row_bytes / 2**30:.1f} GiB of KV cache per sentence, "
            f"more than the {DECODE_CACHE_BYTES / 2**30:.0f} GiB a decoding call may hold: use a "
            "smaller beam (8-16 decode best with rerank) or a smaller max_len"
        )


def beam_call_rows(beam_size: int, batch_size: int) -> int:
    """Sentences per generation call: ``batch_size``, or on CPU with beam search at most
    ``BEAM_ROWS // beam_size`` (at least 1)."""
    if beam_size > 1 and jax.default_backend() == "cpu":
        return max(1, min(batch_size, BEAM_ROWS // beam_size))
    return batch_size


def closest_candidates(
    vectors: np.ndarray, candidates: Sequence[str], encode: Callable[[list[str]], np.ndarray]
) -> list[str]:
    """For each vector, the candidate sentence whose encoding lies nearest to it (L2).

    Args:
        vectors: [N, D] the vectors being decoded.
        candidates: N * K sentences, vector i's at ``[i * K, (i + 1) * K)``, best-scored
            first; an empty candidate is never chosen unless all K are empty (then the first).
        encode: Sentences -> [M, D] vectors in the space of ``vectors``.

    Returns:
        N sentences.
    """
    n = len(vectors)
    if n == 0:
        return []
    k = len(candidates) // n
    if not k or n * k != len(candidates):
        raise ValueError(f"{len(candidates)} candidates for {n} vectors: not K per vector")
    dist = np.full(n * k, np.inf)
    live = np.array([i for i, text in enumerate(candidates) if text.strip()], np.int64)
    if len(live):
        # Beams often decode to the same text: each distinct text is encoded once.
        texts, which = np.unique(
            np.array([candidates[i] for i in live], object), return_inverse=True
        )
        encoded = encode(list(texts))[which]
        dist[live] = np.sum((encoded - vectors[live // k]) ** 2, axis=-1)
    picks = np.argmin(dist.reshape(n, k), axis=1)
    return [candidates[i * k + j] for i, j in enumerate(picks)]


class Codec:
    """Sentence <-> concept vector codec.

    Args:
        model: A (trained) codec model.
        tokenizer: Its tokenizer.
        batch_size: Most sentences per jitted call (on CPU, ``encode`` uses at most
            ``ENCODE_BATCH`` of them).
        encode_precision: "float32", or "bfloat16" to encode under
            ``jax.default_matmul_precision("bfloat16")``: on CPU the encoder's matrix products
            are rounded to bfloat16 (float32 accumulation, everything else float32), 1.4-1.6x
            faster on a CPU with avx512_bf16, vectors within about 0.3% (relative L2) of the
            float32 ones; on an accelerator XLA applies its own meaning of that setting.
            Decoding runs in float32; with ``rerank=True`` the candidates are encoded at this
            precision.

    Raises:
        ValueError: If the tokenizer and the model disagree on the vocabulary size, or for
            an unknown ``encode_precision``.
    """

    def __init__(
        self,
        model: CodecModel,
        tokenizer: Tokenizer,
        *,
        batch_size: int = 128,
        encode_precision: EncodePrecision = "float32",
    ):
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
            static_argnames=("max_len", "beam_size", "n_best", "no_repeat_ngram"),
        )
        self._log_likelihood = jax.jit(
            functools.partial(_log_likelihood_impl, self._graphdef), static_argnames="prefix"
        )
        self._lengths = _ladder(LENGTH_BUCKETS, self.config.max_len)
        self.encode_precision = encode_precision

    @property
    def devices(self) -> tuple[jax.Device, ...] | None:
        """The devices ``encode`` runs on (None, the default: JAX's default device).

        Data parallel: the chunks of one call go to the devices in turn, each device running
        the same compiled program on whole chunks as a single device would, so the vectors
        do not depend on the number of devices, bit for bit. The weights are copied to each
        device on the first call. Set it to ``jax.local_devices()`` to use all of this
        process's devices (``lcm data embed`` does).
        """
        # getattr: subclasses (SonarCodec) build their state without Codec.__init__.
        return getattr(self, "_devices", None)

    @devices.setter
    def devices(self, value: Sequence[jax.Device] | None) -> None:
        devices = tuple(value) if value is not None else ()
        if len(set(devices)) != len(devices):
            raise ValueError(f"devices must be distinct, got {devices}")
        self._devices = devices or None
        self._replicas: list[tuple[nnx.State, jax.Device | None]] | None = None

    def _encoder_replicas(self) -> list[tuple[nnx.State, jax.Device | None]]:
        """(weights, device) per device of :attr:`devices`; ``[(weights, None)]`` without."""
        if self.devices is None:
            return [(self._state, None)]
        if getattr(self, "_replicas", None) is None:
            self._replicas = [(jax.device_put(self._state, d), d) for d in self.devices]
        return self._replicas

    @property
    def encode_precision(self) -> EncodePrecision:
        """Precision of the encoder's matrix products: "float32" or "bfloat16"."""
        return self._encode_precision

    @encode_precision.setter
    def encode_precision(self, value: EncodePrecision) -> None:
        if value not in ENCODE_PRECISIONS:
            raise ValueError(f"encode_precision must be one of {ENCODE_PRECISIONS}, got {value!r}")
        self._encode_precision = value

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
        sentences = check_sentences(sentences)
        if not sentences:
            return np.zeros((0, self.dim), np.float32)
        cap = self.config.max_len - 1
        ids = self.tokenizer.encode(sentences)
        n_long = sum(len(x) > cap for x in ids)
        if n_long:
            logger.warning("encode(): truncated %d sentence(s) to %d tokens", n_long, cap)
        return self._encode_rows([x[:cap] + [EOS_ID] for x in ids])

    def _encode_rows(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """Run the jitted encoder on token rows (special tokens included), batched by length.

        Args:
            rows: N token id sequences, each non-empty and at most the longest bucket long.

        Returns:
            [N, D] float32, row i for ``rows[i]``.
        """
        out = np.zeros((len(rows), self.dim), np.float32)
        if not rows:
            return out
        lengths = np.array([len(r) for r in rows])
        order = np.argsort(lengths, kind="stable")
        on_cpu = jax.default_backend() == "cpu"
        batch = min(self.batch_size, ENCODE_BATCH) if on_cpu else self.batch_size
        rows_ladder = _ladder(BATCH_SIZES, batch)
        replicas = self._encoder_replicas()
        pending = []
        # "bfloat16" is JAX's matmul-precision switch, which lcm.nn.matmul honours on CPU too;
        # the jit cache keys on it, so both precisions can be used in one process. "float32"
        # leaves the process's own setting alone.
        precision = (
            jax.default_matmul_precision("bfloat16")
            if self.encode_precision == "bfloat16"
            else contextlib.nullcontext()
        )
        with precision:
            # Dispatch every chunk before reading any result: host-side padding overlaps compute
            # (and, with several devices, the devices run their chunks at the same time).
            for n, start in enumerate(range(0, len(order), batch)):
                idx = order[start : start + batch]
                shape = (_fit(rows_ladder, len(idx)), _fit(self._lengths, lengths[idx[-1]]))
                tokens = np.full(shape, PAD_ID, np.int32)
                for row, i in enumerate(idx):
                    tokens[row, : len(rows[i])] = rows[i]
                # The chunking above never depends on the devices: chunk n is what one device
                # would compute, on device n mod their number.
                state, device = replicas[n % len(replicas)]
                placed = tokens if device is None else jax.device_put(tokens, device)
                pending.append((idx, self._encode(state, placed)))
        for idx, vectors in pending:
            out[idx] = np.asarray(vectors)[: len(idx)]
        return out

    def decode(
        self,
        vectors: np.ndarray | Sequence[Sequence[float]],
        *,
        beam_size: int = 1,
        max_len: int | None = None,
        rerank: bool = False,
        no_repeat_ngram: int = 0,
        history: Sequence[Sequence[str]] | None = None,
    ) -> list[str]:
        """Decode concept vectors into sentences.

        Args:
            vectors: [N, D] real, finite values.
            beam_size: 1 for greedy decoding, more for beam search.
            max_len: Most tokens per sentence, EOS included (default ``config.max_len``).
            no_repeat_ngram: n >= 2: no sentence repeats a token n-gram of its own or of its
                ``history`` (the n-gram's first n - 1 tokens within the sentence; EOS is never
                held back); 0: off.
            history: With ``no_repeat_ngram``, the sentences written before each vector's
                (N lists; the most recent 512 tokens count). Default: none.
            rerank: Return, of the ``beam_size`` final beams, the sentence whose own encoding
                lies nearest (L2) to the vector, instead of the most probable one (needs
                ``beam_size > 1``). Costs one encoding per beam, little next to decoding. On
                the shipped codec's held-out sentences, round-trip BLEU is 62 greedy, 78 with
                beam 8 and 80 with beam 16, reranked (docs/codec.md, "Decoding: beam search and
                reranking").

        Returns:
            N sentences.

        Raises:
            ValueError: For a wrong shape or dtype, non-finite values, or bad options.
        """
        vecs, max_len = self._check_decode_args(
            vectors, beam_size, max_len, rerank, no_repeat_ngram
        )
        ids = self._history_ids(history, len(vecs)) if no_repeat_ngram else None
        cfg = self.config
        check_cache_fits(2 * 4 * cfg.decoder_layers * max_len * cfg.d_model * beam_size, beam_size)
        batch = beam_call_rows(beam_size, self.batch_size)
        seqs = self._generate_rows(
            vecs,
            max_len=max_len,
            beam_size=beam_size,
            batch_size=batch,
            n_best=rerank,
            history=ids,
            no_repeat_ngram=no_repeat_ngram,
        )
        texts = self.tokenizer.decode(seqs)
        return closest_candidates(vecs, texts, self.encode) if rerank else texts

    @property
    def fingerprint(self) -> str:
        """``"sha256:..."`` of this codec's config, tokenizer and weights: the identity of its
        concept space (``lcm data embed`` records it; a resume or a training run in another
        space is refused). Encoding precision is recorded beside it, not in it."""
        if getattr(self, "_fingerprint", None) is None:
            digest = hashlib.sha256(self.config.identity().encode())
            digest.update(self.tokenizer.model_proto)
            for name, array in sorted(flat_weights(self.model).items()):
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(array).tobytes())
            self._fingerprint = "sha256:" + digest.hexdigest()[:32]
        return self._fingerprint

    @property
    def decoder_prefix(self) -> tuple[int, ...]:
        """The ids the decoder starts every sentence from (``(BOS,)``), before its tokens."""
        return (BOS_ID,)

    def target_ids(self, sentences: Sequence[str], max_len: int | None = None) -> list[list[int]]:
        """What the decoder is scored on: each sentence's ids, then ``EOS``, at most
        ``max_len`` ids in all (default :attr:`max_decode_len`; a longer one is cut, and
        then has no ``EOS``).

        Raises:
            TypeError, ValueError: As :meth:`encode`, for the sentences.
        """
        cap = self.max_decode_len if max_len is None else max_len
        if not isinstance(cap, int) or not 1 <= cap <= self.max_decode_len:
            raise ValueError(f"max_len must be an int in [1, {self.max_decode_len}], got {cap!r}")
        return [[*x, EOS_ID][:cap] for x in self.tokenizer.encode(check_sentences(sentences))]

    def log_likelihood(
        self,
        vectors: np.ndarray | Sequence[Sequence[float]],
        sentences: Sequence[str],
        *,
        max_len: int | None = None,
    ) -> np.ndarray:
        """The decoder's teacher-forced log-likelihood of each sentence given its vector.

        The sum over :meth:`target_ids` of ``log p(id | vector, earlier ids)``, computed by
        :func:`encoders.model.token_log_likelihood`: the function the likelihood LCM trains
        through.

        Args:
            vectors: [N, D] real, finite values.
            sentences: N non-blank strings.
            max_len: Most ids scored per sentence, EOS included (default
                :attr:`max_decode_len`).

        Returns:
            [N] float64 log-probabilities (natural log).

        Raises:
            ValueError: For bad vectors, a count mismatch or a blank sentence.
        """
        vecs = self._check_vectors(vectors)
        rows = self.target_ids(sentences, max_len)
        if len(rows) != len(vecs):
            raise ValueError(f"log_likelihood(): {len(vecs)} vectors for {len(rows)} sentences")
        out = np.zeros(len(rows), np.float64)
        rows_ladder = _ladder(BATCH_SIZES, self.batch_size)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            width = _fit(self._lengths, max(len(r) for r in chunk))
            n = _fit(rows_ladder, len(chunk))
            targets = np.full((n, width), PAD_ID, np.int32)
            for i, r in enumerate(chunk):
                targets[i, : len(r)] = r
            concepts = np.zeros((n, self.dim), np.float32)
            concepts[: len(chunk)] = vecs[start : start + len(chunk)]
            scores = self._log_likelihood(
                self._state, concepts, targets, prefix=self.decoder_prefix
            )
            out[start : start + len(chunk)] = np.asarray(scores)[: len(chunk)]
        return out

    @property
    def max_decode_len(self) -> int:
        """The most tokens :meth:`decode` generates per sentence, EOS included."""
        return self.config.max_len

    def _check_decode_args(
        self,
        vectors: np.ndarray | Sequence[Sequence[float]],
        beam_size: int,
        max_len: int | None,
        rerank: bool = False,
        no_repeat_ngram: int = 0,
    ) -> tuple[np.ndarray, int]:
        """Validated ``[N, D]`` float32 vectors and the generation length cap."""
        vecs = self._check_vectors(vectors)
        top = self.max_decode_len
        max_len = top if max_len is None else max_len
        check_decoding(beam_size, rerank, no_repeat_ngram)
        if not isinstance(max_len, int) or not 1 <= max_len <= top:
            raise ValueError(f"max_len must be an int in [1, {top}], got {max_len!r}")
        return vecs, max_len

    def _history_ids(self, history: Sequence[Sequence[str]] | None, n: int) -> np.ndarray:
        """[n, H] ids of each row's earlier sentences, each ended by EOS, PAD-filled, H one of
        :data:`HISTORY_WIDTHS` (the most recent tokens of a longer history)."""
        if history is None:
            return np.zeros((n, 0), np.int32)
        if isinstance(history, str) or len(history) != n:
            got = "a str" if isinstance(history, str) else f"{len(history)} entries"
            raise ValueError(
                f"decode(): history needs one list of sentences per vector ({n}), got {got}"
            )
        for i, sents in enumerate(history):
            if isinstance(sents, str):
                raise ValueError(f"decode(): history[{i}] is a str, not a list of sentences")
        flat = [s for sents in history for s in sents if s.strip()]
        pieces = iter(self.tokenizer.encode(flat))
        rows = []
        for sents in history:
            row = [t for s in sents if s.strip() for t in (*next(pieces), EOS_ID)]
            rows.append(row[-HISTORY_WIDTHS[-1] :])
        width = _fit(HISTORY_WIDTHS, max(map(len, rows), default=0))
        out = np.full((n, width), PAD_ID, np.int32)
        for r, row in enumerate(rows):
            out[r, : len(row)] = row
        return out

    def _generate_rows(
        self,
        vecs: np.ndarray,
        *extra: object,
        max_len: int,
        beam_size: int,
        batch_size: int | None = None,
        n_best: bool = False,
        history: np.ndarray | None = None,
        no_repeat_ngram: int = 0,
    ) -> list[list[int]]:
        """Generate token ids for ``vecs`` [N, D] in padded chunks, cut before EOS.

        Args:
            vecs: [N, D] float32.
            *extra: More arguments of the jitted generator (after the vectors).
            max_len: Most tokens per sentence, EOS included.
            beam_size: 1 for greedy decoding.
            batch_size: Most sentences per call (default ``self.batch_size``).
            n_best: Every final beam instead of the best one.
            history: [N, H] ids of each row's earlier text, for ``no_repeat_ngram``.
            no_repeat_ngram: The n-gram order to block (0: off).

        Returns:
            N id lists without EOS, or with ``n_best`` N * beam_size of them (the beams of
            vector i at ``[i * beam_size, (i + 1) * beam_size)``, best first).
        """
        batch_size = batch_size or self.batch_size
        rows_ladder = _ladder(BATCH_SIZES, batch_size)
        pending = []
        for start in range(0, len(vecs), batch_size):
            chunk = vecs[start : start + batch_size]
            padded = np.zeros((_fit(rows_ladder, len(chunk)), self.dim), np.float32)
            padded[: len(chunk)] = chunk
            block = {}
            if no_repeat_ngram:
                rows = np.full((len(padded), history.shape[1]), PAD_ID, np.int32)
                rows[: len(chunk)] = history[start : start + batch_size]
                block = {"history": rows, "no_repeat_ngram": no_repeat_ngram}
            tokens = self._generate(
                self._state,
                padded,
                *extra,
                max_len=max_len,
                beam_size=beam_size,
                n_best=n_best,
                **block,
            )
            pending.append((len(chunk), tokens))
        seqs: list[list[int]] = []
        for n, tokens in pending:
            for row in np.asarray(tokens)[:n].reshape(-1, max_len).tolist():
                seqs.append(row[: row.index(EOS_ID)] if EOS_ID in row else row)
        return seqs

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
        n_params = save_weights(self.model, path / WEIGHTS_FILE, weights_dtype)
        self.tokenizer.save(path / TOKENIZER_FILE)
        write_bytes_atomic(path / CARD_FILE, (card or self._default_card(n_params)).encode())

    def _default_card(self, n_params: int) -> str:
        """The model card :meth:`save` writes when it is given none."""
        return _minimal_card(self.config, n_params)

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
        raw = read_yaml(path / CONFIG_FILE)
        if raw.get("family") == "sonar":
            raise ConfigError(
                f"{path} holds a converted SONAR model: open it with encoders.load(path) "
                "(or encoders.sonar.SonarCodec.load)"
            )
        try:
            cfg = from_dict(CodecModelConfig, raw)
        except ConfigError as e:
            raise ConfigError(f"{path / CONFIG_FILE}: {e}") from e
        tokenizer = Tokenizer.load(path / TOKENIZER_FILE)
        weights = load_weights(path / WEIGHTS_FILE)
        model = build_from_weights(cfg, weights, source=str(path / WEIGHTS_FILE))
        return cls(model, tokenizer, batch_size=batch_size)


def build_from_weights(
    cfg: CodecModelConfig, weights: dict[str, np.ndarray], *, source: str = "weights"
) -> CodecModel:
    """A model of config ``cfg`` holding ``weights`` (flat ``"path/to/param"`` arrays).

    Raises:
        ValueError: Naming the first missing, unexpected or wrongly shaped parameter.
    """
    return build_with_weights(lambda: CodecModel(cfg, nnx.Rngs(0)), weights, source=source)


def _minimal_card(cfg: CodecModelConfig, n_params: int) -> str:
    return (
        "# Sentence codec\n\n"
        f"Encoder {cfg.encoder_layers} layers, decoder {cfg.decoder_layers} layers, "
        f"d_model {cfg.d_model}, D {cfg.concept_dim}, vocabulary {cfg.vocab_size}, "
        f"{n_params:,} parameters.\n"
    )

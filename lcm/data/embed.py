"""Fill the ``embeddings`` column of Parquet shards with a sentence encoder, and sample it.

:func:`embed_shards` streams documents from input shards, encodes their sentences in large
batches (sentences of several documents together), and writes new shards with the same
documents plus embeddings, and the end-of-text concept (the encoding of
:data:`END_OF_TEXT`) as ``eot.npy`` beside them. :func:`sample_embeddings` draws a uniform
sample of embedding vectors (for fitting a normalizer or codebooks) in one streaming pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lcm.data.shards import EOT_FILE, SPACE_FILE, ShardWriter, read_shards, read_space
from lcm.io import replaced_on_success, save_npy_atomic, write_text_atomic
from lcm.text.readers import DataError

END_OF_TEXT = "End of text."


class SentenceEncoder(Protocol):
    """What embedding needs from a codec (``encoders.load(...)`` returns one)."""

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        """``N`` sentences -> ``[N, D]`` float32 vectors."""
        ...


def embed_shards(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    encoder: SentenceEncoder,
    *,
    batch_sentences: int = 2048,
    docs_per_shard: int = 10_000,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Encode every document of ``src`` into new shards in ``out`` (same rows, plus embeddings).

    Args:
        src: Input shard directory or file.
        out: Output directory (see :class:`~lcm.data.shards.ShardWriter`).
        encoder: The sentence encoder.
        batch_sentences: Encode at least this many sentences per call (across documents).
        docs_per_shard: Documents per output shard.
        overwrite: Allow replacing shards already in ``out``.
        resume: Continue an interrupted run into ``out``: keep its complete shards and encode
            only the documents after them (same ``src`` and ``docs_per_shard``).
        progress: Show a progress bar on stderr.

    The encoder's space (:func:`encoder_space`: its codec's fingerprint and precision) is
    written to ``SPACE_FILE`` beside the shards first, so that a resume, a normalizer and a
    training run can check that they stay in one space.

    Returns:
        ``{"documents", "sentences", "dim", "shards", "eot", "space"}``.

    Raises:
        DataError: ``resume`` into a dataset of another space (:func:`check_space`).
    """
    out = Path(out)
    space = encoder_space(encoder)
    if resume:
        check_space(out, space)
    # --overwrite writes beside the old dataset and swaps only on success.
    staged = replaced_on_success(out) if overwrite else contextlib.nullcontext(out)
    with staged as target:
        result = _embed_into(
            src, target, encoder, space, batch_sentences, docs_per_shard,
            resume and target == out, progress,
        )  # fmt: skip
    return {**result, "shards": [str(out / Path(p).name) for p in result["shards"]],
            "eot": str(out / EOT_FILE), "space": space}  # fmt: skip


def encoder_space(encoder: SentenceEncoder) -> dict[str, Any]:
    """What identifies the concept space ``encoder`` writes: its codec's fingerprint (None for
    an encoder without one) and its encoding precision."""
    return {
        "codec": getattr(encoder, "fingerprint", None),
        "precision": getattr(encoder, "encode_precision", None),
    }


def check_space(out: Path, space: dict[str, Any]) -> None:
    """Refuse to resume ``out`` with an encoder of another space (codec or precision).

    Raises:
        DataError: The recorded space differs, or shards exist without a record.
    """
    recorded = read_space(out) if out.is_dir() else None
    if recorded is None:
        if out.is_dir() and any(out.glob("*.parquet")):
            raise DataError(
                f"{out} has shards but no {SPACE_FILE}: which codec embedded them is unknown, "
                "so a resume could mix two concept spaces; embed afresh with --overwrite",
                path=str(out),
            )
        return
    changed = [k for k in ("codec", "precision") if recorded.get(k) != space.get(k)]
    if changed:
        shown = "; ".join(f"{k} {recorded.get(k)!r} -> {space.get(k)!r}" for k in changed)
        raise DataError(
            f"{out} was embedded in another space ({shown}): resuming would mix two concept "
            "spaces. Resume with the codec and --precision that started it, or --overwrite",
            path=str(out),
        )


def _embed_into(
    src: str | os.PathLike[str],
    out: Path,
    encoder: SentenceEncoder,
    space: dict[str, Any],
    batch_sentences: int,
    docs_per_shard: int,
    resume: bool,
    progress: bool,
) -> dict[str, Any]:
    """:func:`embed_shards` into the directory ``out`` (its final or staged place)."""
    from tqdm import tqdm

    pending: list[dict[str, Any]] = []
    n_docs = n_sents = 0
    dim = None

    def flush(writer: ShardWriter) -> None:
        nonlocal dim
        sentences = [s for row in pending for s in row["sentences"]]
        # Fine-tuning shards repeat sentences across neighbouring documents: encode each once.
        unique = list(dict.fromkeys(sentences))
        encoded = np.asarray(encoder.encode(unique), np.float32)
        if encoded.shape[0] != len(unique) or encoded.ndim != 2:
            raise DataError(
                f"the encoder returned shape {encoded.shape} for {len(unique)} sentences"
            )
        where = {s: i for i, s in enumerate(unique)}
        vectors = encoded[[where[s] for s in sentences]]
        dim = vectors.shape[1]
        start = 0
        for row in pending:
            n = len(row["sentences"])
            writer.write(
                row["doc_id"],
                row["sentences"],
                source=row["source"] or "",
                embeddings=vectors[start : start + n],
                meta=json.loads(row["meta_json"] or "{}"),
            )
            start += n
        pending.clear()

    with ShardWriter(
        out, docs_per_shard=docs_per_shard, resume=resume, manifest_extra={"space": space}
    ) as writer:
        # Recorded once the writer has accepted the directory, before any shard.
        write_text_atomic(out / SPACE_FILE, json.dumps(space, indent=1) + "\n")
        rows = read_shards(src, columns=["doc_id", "source", "sentences", "meta_json"])
        bar = tqdm(rows, desc="embed", unit="doc", disable=not progress, file=sys.stderr)
        size = 0
        skip = writer.resumed_docs
        for row in bar:
            if skip:
                # Documents the kept shards already hold: count them, encode nothing.
                skip -= 1
                n_docs += 1
                n_sents += len(row["sentences"])
                if not skip and row["doc_id"] != writer.last_resumed_doc_id:
                    raise DataError(
                        f"{out} does not continue {src}: its last kept document is "
                        f"{writer.last_resumed_doc_id!r}, the input has {row['doc_id']!r} there",
                        path=str(out),
                    )
                continue
            pending.append(row)
            size += len(row["sentences"])
            n_docs += 1
            n_sents += len(row["sentences"])
            if size >= batch_sentences:
                flush(writer)
                size = 0
        if pending:
            flush(writer)
        dim = dim if dim is not None else writer.embedding_dim
        shards = writer.close()
    eot = np.asarray(encoder.encode([END_OF_TEXT]), np.float32)[0]
    save_npy_atomic(out / EOT_FILE, eot)
    return {
        "documents": n_docs,
        "sentences": n_sents,
        "dim": dim,
        "shards": [str(p) for p in shards],
        "eot": str(out / EOT_FILE),
    }


def sample_embeddings(src: str | os.PathLike[str], max_vectors: int, seed: int = 0) -> np.ndarray:
    """A uniform sample (without replacement) of the embedding vectors of ``src``.

    Each vector gets a random key; the ``max_vectors`` smallest keys are kept, pruning the
    candidates whenever they exceed twice that, so memory stays ``O(max_vectors)``.

    Returns:
        [min(N, max_vectors), D] float32.

    Raises:
        DataError: A document has no embeddings, or the shards hold none.
    """
    rng = np.random.default_rng(seed)
    keys: list[np.ndarray] = []
    vecs: list[np.ndarray] = []
    held = 0
    for row in read_shards(src, columns=["doc_id", "embeddings"]):
        emb = row["embeddings"]
        if emb is None:
            raise DataError(f"{src}: document {row['doc_id']!r} has no embeddings", path=str(src))
        keys.append(rng.random(len(emb)))
        vecs.append(emb)
        held += len(emb)
        if held > 2 * max_vectors:
            k, v = np.concatenate(keys), np.concatenate(vecs)
            keep = np.argpartition(k, max_vectors)[:max_vectors]
            keys, vecs, held = [k[keep]], [v[keep]], max_vectors
    if not held:
        raise DataError(f"{src}: no embeddings found", path=str(src))
    k, v = np.concatenate(keys), np.concatenate(vecs)
    keep = np.sort(np.argsort(k, kind="stable")[:max_vectors])
    return v[keep].astype(np.float32)

"""Fill the ``embeddings`` column of Parquet shards with a sentence encoder, and sample it.

:func:`embed_shards` streams documents from input shards, encodes their sentences in large
batches (sentences of several documents together), and writes new shards with the same
documents plus embeddings, and the end-of-text concept (the encoding of
:data:`END_OF_TEXT`) as ``eot.npy`` beside them. :func:`sample_embeddings` draws a uniform
sample of embedding vectors (for fitting a normalizer or codebooks) in one streaming pass.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lcm.data.concepts import EOT_FILE
from lcm.data.readers import DataError
from lcm.data.shards import ShardWriter, read_shards
from lcm.io import save_npy_atomic

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

    Returns:
        ``{"documents", "sentences", "dim", "shards", "eot"}``.
    """
    from tqdm import tqdm

    out = Path(out)
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
        out, docs_per_shard=docs_per_shard, overwrite=overwrite, resume=resume
    ) as writer:
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

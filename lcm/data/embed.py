"""Fill the ``embeddings`` column of Parquet shards with a sentence encoder, and sample it.

:func:`embed_shards` streams documents from input shards, encodes their sentences in large
batches (sentences of several documents of one output shard together), and writes new shards
with the same documents plus embeddings, and the end-of-text concept (the encoding of
:data:`END_OF_TEXT`) as ``eot.npy`` beside them. :func:`sample_embeddings` draws a uniform
sample of embedding vectors (for fitting a normalizer or codebooks) in one streaming pass.

Several processes (:class:`Processes`: ``lcm launch``, or one process per host of a cluster)
share one embedding job by output shard. Output shard ``k`` holds input documents
``k * docs_per_shard`` to ``(k + 1) * docs_per_shard - 1`` (in input order) and is encoded and
written, under its final name, by process ``k % P``. Every process reads the whole input (to
count documents; reading is cheap next to encoding) and process 0 writes the manifest once all
have finished. A batch never spans two output shards, so a shard's encoder calls depend on its
own documents only: the files are those of one process, bit for bit, whatever the number of
processes, and ``resume`` keeps any complete shard, whichever process wrote it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lcm.data.shards import (
    EOT_FILE,
    MANIFEST_NAME,
    SPACE_FILE,
    ShardSummary,
    ShardWriter,
    read_shard_summary,
    read_shards,
    read_space,
    write_manifest,
)
from lcm.io import replace_dir, save_npy_atomic, staging_dir, write_text_atomic
from lcm.text.readers import DataError

END_OF_TEXT = "End of text."
_PREFIX = "shard"  # embedded shards keep the default prefix: shard-NNNNN.parquet
_SHARD_FILE = re.compile(rf"{_PREFIX}-(\d{{5,}})\.parquet")


class SentenceEncoder(Protocol):
    """What embedding needs from a codec (``encoders.load(...)`` returns one)."""

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        """``N`` sentences -> ``[N, D]`` float32 vectors."""
        ...


class Processes(Protocol):
    """The processes sharing one embedding job (``trainers.distributed.ProcessGroup`` is one)."""

    @property
    def index(self) -> int:
        """This process, ``0 <= index < count``."""
        ...

    @property
    def count(self) -> int:
        """How many processes share the job."""
        ...

    def gather(self, text: str) -> list[str]:
        """Every process's ``text``, in process order; returns once every process has called
        it (a barrier)."""
        ...


@dataclasses.dataclass(frozen=True)
class OneProcess:
    """:class:`Processes` of a job that this process runs alone (the default)."""

    index: int = 0
    count: int = 1

    def gather(self, text: str) -> list[str]:
        """``[text]``."""
        return [text]


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
    processes: Processes | None = None,
) -> dict[str, Any]:
    """Encode every document of ``src`` into new shards in ``out`` (same rows, plus embeddings).

    Args:
        src: Input shard directory or file.
        out: Output directory (see :class:`~lcm.data.shards.ShardWriter`).
        encoder: The sentence encoder.
        batch_sentences: Encode at least this many sentences per call (across documents of
            one output shard; a shard's last call may have fewer).
        docs_per_shard: Documents per output shard.
        overwrite: Allow replacing shards already in ``out`` (the new dataset is written
            beside it and swapped in only on success).
        resume: Continue an interrupted run into ``out``: keep its complete shards and encode
            the others (same ``src`` and ``docs_per_shard``; any number of processes).
        progress: Show a progress bar on stderr (process 0 only).
        processes: The processes sharing the job (default: this one alone). Each of them calls
            ``embed_shards`` with the same arguments and writes every ``P``-th shard (see the
            module docstring); ``out`` must be a directory they all see.

    The encoder's space (:func:`encoder_space`: its codec's fingerprint and precision) is
    written to ``SPACE_FILE`` beside the shards first, so that a resume, a normalizer and a
    training run can check that they stay in one space.

    Returns:
        ``{"documents", "sentences", "dim", "shards", "eot", "space"}`` of the whole dataset
        (the same in every process).

    Raises:
        DataError: ``resume`` into a dataset of another space (:func:`check_space`) or of
            another input, or another process failed (the message names it and its error).
            A failing process raises its own error; every process raises, none hangs.
    """
    group = processes or OneProcess()
    out = Path(out)
    space = encoder_space(encoder)
    # Every process looks at `out` before any of them writes there, so all decide alike.
    first = _together(group, lambda: _check_out(out, space, overwrite=overwrite, resume=resume))[0]
    # --overwrite writes beside the old dataset (one directory for all processes: process 0's
    # id names it) and swaps it in only on success.
    staged = bool(first["staged"])
    target = staging_dir(out, first["pid"]) if staged else out
    lead = group.index == 0
    try:
        _together(group, functools.partial(_prepare, target, space, staged) if lead else _idle)
        parts = _together(
            group,
            lambda: _embed_part(
                src, target, encoder, group, batch_sentences, docs_per_shard,
                resume and not staged, progress and lead,
            ),
        )  # fmt: skip
        records, dim = _merge(parts, docs_per_shard)
        finish = functools.partial(_publish, target, out, records, dim, space, encoder, staged)
        _together(group, finish if lead else _idle)
    except BaseException:
        if staged and lead:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return {
        "documents": parts[0]["documents"],
        "sentences": parts[0]["sentences"],
        "dim": dim,
        "shards": [str(out / r["file"]) for r in records],
        "eot": str(out / EOT_FILE),
        "space": space,
    }


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


def _together(group: Processes, step: Callable[[], Any]) -> list[Any]:
    """Run ``step`` in every process, then exchange the outcomes: all go on, or all raise.

    Returns:
        Every process's JSON-able result, in process order.

    Raises:
        The process's own error if its step failed, else a :class:`DataError` naming the first
        process that failed: a process never waits for one that has stopped.
    """
    try:
        value, error = step(), None
    except Exception as e:  # noqa: BLE001 - reported to the other processes, then re-raised
        value, error = None, e
    note = {"value": value} if error is None else {"error": str(error) or type(error).__name__}
    notes = [json.loads(t) for t in group.gather(json.dumps(note))]
    if error is not None:
        raise error
    failed = [(i, n["error"]) for i, n in enumerate(notes) if "error" in n]
    if failed:
        index, message = failed[0]
        raise DataError(f"process {index} of {group.count} failed: {message}")
    return [n["value"] for n in notes]


def _idle() -> None:
    """The step of a process that has nothing to do while process 0 works."""


def _check_out(out: Path, space: dict[str, Any], *, overwrite: bool, resume: bool) -> dict:
    """The checks on ``out`` before anything is written, and whether to write beside it.

    Raises:
        FileExistsError: ``out`` holds shards and neither ``overwrite`` nor ``resume`` is set.
        DataError: ``resume`` into another space (:func:`check_space`).
    """
    if resume:
        check_space(out, space)
    is_dir = out.is_dir()
    if is_dir and not (overwrite or resume):
        if any(out.glob(f"{_PREFIX}-*.parquet")) or (out / MANIFEST_NAME).exists():
            raise FileExistsError(
                f"{out} already contains shards ({_PREFIX}-*.parquet or {MANIFEST_NAME}); "
                "choose another directory or pass overwrite=True"
            )
    return {"pid": os.getpid(), "staged": overwrite and is_dir and any(out.iterdir())}


def _prepare(target: Path, space: dict[str, Any], staged: bool) -> None:
    """Process 0 readies the directory every process writes in, before any shard."""
    if staged:
        shutil.rmtree(target, ignore_errors=True)  # left by a run that was killed
    target.mkdir(parents=True, exist_ok=True)
    for tmp in target.glob(f".{_PREFIX}-*.parquet.tmp-*"):
        tmp.unlink(missing_ok=True)  # unfinished shards of an interrupted run
    # A resumed run's manifest no longer lists what is there; the new one is written last.
    (target / MANIFEST_NAME).unlink(missing_ok=True)
    write_text_atomic(target / SPACE_FILE, json.dumps(space, indent=1) + "\n")


def _embed_part(
    src: str | os.PathLike[str],
    out: Path,
    encoder: SentenceEncoder,
    group: Processes,
    batch_sentences: int,
    docs_per_shard: int,
    resume: bool,
    progress: bool,
) -> dict[str, Any]:
    """Encode and write this process's shards (``k % group.count == group.index``) into ``out``.

    Returns:
        ``{"documents", "sentences"}`` of the whole input, ``"dim"`` and ``"shards"``:
        ``[k, manifest record]`` of each of this process's shards, kept ones included.
    """
    from tqdm import tqdm

    kept = _kept_shards(out, group, docs_per_shard) if resume else {}
    seen = dict.fromkeys(kept, 0)
    todo = (k for k in itertools.count(group.index, group.count) if k not in kept)
    pending: list[dict[str, Any]] = []
    n_docs = n_sents = size = 0
    with ShardWriter(out, _PREFIX, docs_per_shard, indices=todo) as writer:
        rows = read_shards(src, columns=["doc_id", "source", "sentences", "meta_json"])
        bar = tqdm(rows, desc="embed", unit="doc", disable=not progress, file=sys.stderr)
        for row in bar:
            k, j = divmod(n_docs, docs_per_shard)
            n_docs += 1
            n_sents += len(row["sentences"])
            if k % group.count != group.index:
                continue  # another process's shard
            if k in kept:
                _check_kept(kept[k], j, row["doc_id"], src)
                seen[k] += 1
                continue
            pending.append(row)
            size += len(row["sentences"])
            if size >= batch_sentences or j == docs_per_shard - 1:
                _encode_into(writer, encoder, pending)
                pending, size = [], 0
        if pending:
            _encode_into(writer, encoder, pending)
    for k, (path, summary) in kept.items():
        if seen[k] != len(summary.doc_ids):
            raise DataError(
                f"{path} holds {len(summary.doc_ids)} documents, {src} has {seen[k]} for it: "
                "resume needs the input and the docs_per_shard of the run that wrote it",
                path=str(path),
            )
    records = [[k, {"file": path.name, "n_docs": len(s.doc_ids), "n_sentences": s.n_sentences}]
               for k, (path, s) in kept.items()]  # fmt: skip
    records += [[_shard_index(r["file"]), r] for r in writer.records]
    dims = [s.embedding_dim for _, s in kept.values()] + [writer.embedding_dim]
    return {
        "documents": n_docs,
        "sentences": n_sents,
        "dim": next((d for d in dims if d is not None), None),
        "shards": sorted(records, key=lambda r: r[0]),
    }


def _encode_into(writer: ShardWriter, encoder: SentenceEncoder, rows: list[dict[str, Any]]) -> None:
    """Encode the sentences of ``rows`` in one call and write the rows with their vectors."""
    sentences = [s for row in rows for s in row["sentences"]]
    # Fine-tuning shards repeat sentences across neighbouring documents: encode each once.
    unique = list(dict.fromkeys(sentences))
    encoded = np.asarray(encoder.encode(unique), np.float32)
    if encoded.shape[0] != len(unique) or encoded.ndim != 2:
        raise DataError(f"the encoder returned shape {encoded.shape} for {len(unique)} sentences")
    where = {s: i for i, s in enumerate(unique)}
    vectors = encoded[[where[s] for s in sentences]]  # [n_sentences, D]
    start = 0
    for row in rows:
        n = len(row["sentences"])
        writer.write(
            row["doc_id"],
            row["sentences"],
            source=row["source"] or "",
            embeddings=vectors[start : start + n],
            meta=json.loads(row["meta_json"] or "{}"),
        )
        start += n


def _shard_index(name: str) -> int | None:
    """``k`` of a shard file name ``shard-k.parquet`` (None for another name)."""
    match = _SHARD_FILE.fullmatch(name)
    return int(match.group(1)) if match else None


def _kept_shards(
    out: Path, group: Processes, docs_per_shard: int
) -> dict[int, tuple[Path, ShardSummary]]:
    """This process's complete shards in ``out`` (a shard is published only once complete).

    Raises:
        DataError: A shard holds more than ``docs_per_shard`` documents, or no embeddings.
        ValueError: A shard is unreadable.
    """
    kept = {}
    for path in sorted(out.glob(f"{_PREFIX}-*.parquet")):
        k = _shard_index(path.name)
        if k is None or k % group.count != group.index:
            continue
        summary = read_shard_summary(path)
        if len(summary.doc_ids) > docs_per_shard:
            raise DataError(
                f"{path} holds {len(summary.doc_ids)} documents, more than docs_per_shard="
                f"{docs_per_shard}: resume needs the docs_per_shard of the run that wrote it",
                path=str(path),
            )
        if summary.embedding_dim is None:
            raise DataError(f"{path} holds no embeddings: not a shard of this run", path=str(path))
        kept[k] = (path, summary)
    return kept


def _check_kept(kept: tuple[Path, ShardSummary], j: int, doc_id: str, src: object) -> None:
    """Check that input document ``doc_id`` is document ``j`` of the kept shard."""
    path, summary = kept
    have = summary.doc_ids[j] if j < len(summary.doc_ids) else None
    if have != doc_id:
        raise DataError(
            f"{path} does not continue {src}: its document {j} is {have!r}, the input has "
            f"{doc_id!r} there; resume needs the input and the docs_per_shard of the run that "
            "wrote it",
            path=str(path),
        )


def _merge(parts: list[dict[str, Any]], docs_per_shard: int) -> tuple[list[dict], int | None]:
    """Every process's shard records, in shard order, and ``D``.

    Raises:
        DataError: The processes read different inputs, or a shard is missing.
    """
    if len({(p["documents"], p["sentences"]) for p in parts}) != 1:
        counts = ", ".join(f"{p['documents']} documents" for p in parts)
        raise DataError(f"the processes read different inputs ({counts})")
    records = sorted((tuple(r) for p in parts for r in p["shards"]), key=lambda r: r[0])
    n_shards = -(-parts[0]["documents"] // docs_per_shard)
    if [k for k, _ in records] != list(range(n_shards)):
        raise DataError(f"shards {[k for k, _ in records]} do not make 0..{n_shards - 1}")
    dims = {p["dim"] for p in parts} - {None}
    if len(dims) > 1:
        raise DataError(f"the processes wrote embeddings of different sizes {sorted(dims)}")
    return [r for _, r in records], next(iter(dims), None)


def _publish(
    target: Path,
    out: Path,
    records: list[dict],
    dim: int | None,
    space: dict[str, Any],
    encoder: SentenceEncoder,
    staged: bool,
) -> None:
    """Process 0 finishes the dataset once every shard is written: the end-of-text concept,
    then the manifest (its presence marks a finished run), then the swap of a staged one."""
    eot = np.asarray(encoder.encode([END_OF_TEXT]), np.float32)[0]
    save_npy_atomic(target / EOT_FILE, eot)
    write_manifest(target, records, prefix=_PREFIX, embedding_dim=dim, extra={"space": space})
    if staged:
        replace_dir(target, out)


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

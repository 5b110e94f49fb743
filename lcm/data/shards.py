"""Parquet shards of documents as sentence lists, written atomically.

Layout of an output directory::

    out_dir/shard-00000.parquet   # SHARD_SCHEMA, ``docs_per_shard`` rows, row groups of
    out_dir/shard-00001.parquet   #   ``row_group_size`` rows (one row = one document)
    out_dir/manifest.json         # shard list with per-shard counts; written last

Each shard is written under a hidden temporary name (``.shard-00000.parquet.tmp-<pid>``) and
``os.replace``d to its final name only once complete, so a crash never leaves a half-written
file under a final name. ``manifest.json`` is written (atomically) by ``close()`` only, so its
presence marks a finished run and :func:`read_shards` on a directory reads exactly the shards
it lists.

The ``embeddings`` column is reserved for sentence embeddings (one float32 vector per
sentence): it is null until an encoder fills it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lcm.io import replaced_on_success, write_text_atomic
from lcm.text.readers import DataError, Document
from lcm.text.segment import segment_document

EOT_FILE = "eot.npy"  # the end-of-text concept, written next to embedded shards
SPACE_FILE = "embedding.json"  # the space record: which codec, at which precision

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "SHARD_SCHEMA",
    "ShardSummary",
    "ShardWriter",
    "read_shard_summary",
    "read_shards",
    "shard_name",
    "write_documents",
    "write_manifest",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

SHARD_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("sentences", pa.list_(pa.string()), nullable=False),
        # [n_sentences, D] float32 per document; null until an encoder fills it.
        pa.field("embeddings", pa.list_(pa.list_(pa.float32())), nullable=True),
        pa.field("meta_json", pa.string()),
    ],
    metadata={"lcm.schema_version": str(SCHEMA_VERSION)},
)


def shard_name(index: int, prefix: str = "shard") -> str:
    """The file name of shard ``index``: ``{prefix}-{index:05d}.parquet``."""
    return f"{prefix}-{index:05d}.parquet"


def write_manifest(
    out_dir: str | os.PathLike[str],
    shards: Sequence[Mapping[str, Any]],
    *,
    prefix: str = "shard",
    embedding_dim: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``out_dir/manifest.json`` (atomically) listing ``shards`` in the given order.

    Args:
        out_dir: The shard directory.
        shards: ``{"file", "n_docs", "n_sentences"}`` per shard (:attr:`ShardWriter.records`).
        prefix: The shards' file name prefix.
        embedding_dim: ``D`` of their embeddings (None: no embeddings).
        extra: More fields, after ``embedding_dim``.
    """
    manifest = {
        "format": "lcm-shards",
        "schema_version": SCHEMA_VERSION,
        "prefix": prefix,
        "n_docs": sum(s["n_docs"] for s in shards),
        "n_sentences": sum(s["n_sentences"] for s in shards),
        "embedding_dim": embedding_dim,
        **dict(extra or {}),
        "shards": [dict(s) for s in shards],
    }
    write_text_atomic(Path(out_dir) / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")


@dataclasses.dataclass(frozen=True)
class ShardSummary:
    """What a finished shard holds, read without its embeddings.

    Attributes:
        doc_ids: Its documents' ids, in order.
        n_sentences: Sentences of all its documents.
        embedding_dim: ``D`` of its first document's embeddings (None: no embeddings).
    """

    doc_ids: list[str]
    n_sentences: int
    embedding_dim: int | None


def read_shard_summary(path: str | os.PathLike[str]) -> ShardSummary:
    """Summarize one shard file (reads ``doc_id``, ``sentences`` and one embedding row).

    Raises:
        ValueError: The file is not a readable shard.
    """
    try:
        shard = pq.ParquetFile(path)
        table = shard.read(columns=["doc_id", "sentences"])
        # The first document's vectors give D: no need to read the whole column.
        first = (
            shard.read_row_group(0, columns=["embeddings"]).column(0)[0].as_py()
            if table.num_rows
            else None
        )
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"{path}: cannot resume from an unreadable shard ({e})") from e
    n_sents = int(pc.sum(pc.list_value_length(table["sentences"])).as_py() or 0)
    return ShardSummary(
        table.column("doc_id").to_pylist(), n_sents, len(first[0]) if first else None
    )


def _fsync_file(path: Path) -> None:
    """Flush a file's data to disk so that a rename after it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShardWriter:
    """Write documents (sentence lists, optional embeddings) into Parquet shards.

    Use as a context manager: a normal exit calls :meth:`close` (finishing the last shard and
    writing the manifest); an exception aborts, deleting the unfinished temporary shard and
    writing no manifest. Validation errors from :meth:`write` leave the writer usable; the
    rejected document is not written.

    Args:
        out_dir: Output directory (created if needed).
        prefix: Shard file name prefix: ``{prefix}-{i:05d}.parquet``.
        docs_per_shard: Documents per shard file.
        row_group_size: Documents per Parquet row group (the unit of streaming reads).
        overwrite: Allow an ``out_dir`` that already holds ``{prefix}-*.parquet`` shards or a
            manifest; stale shards with indices beyond the new ones are deleted on close.
        resume: Keep the complete shards an interrupted writer left in ``out_dir`` (those
            numbered from 0 without a gap, each of ``docs_per_shard`` documents) and continue
            after them; :attr:`resumed_docs` says how many documents they hold.
        manifest_extra: More fields for ``manifest.json`` (``lcm data embed`` records the
            concept space there as ``"space"``).
        indices: The shard numbers its shards take in turn (default 0, 1, 2, ...). A writer
            given them fills its part of a directory that several writers share (each
            process of ``lcm data embed`` writes every P-th shard): it looks at nothing
            already there and writes no manifest; the caller lists :attr:`records` of all the
            writers with :func:`write_manifest`.

    Raises:
        ValueError: If a size is not positive, or ``indices`` come with ``overwrite`` or
            ``resume``.
        FileExistsError: If ``out_dir`` already holds shards and neither ``overwrite`` nor
            ``resume`` is set.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        prefix: str = "shard",
        docs_per_shard: int = 10_000,
        row_group_size: int = 1_000,
        *,
        overwrite: bool = False,
        resume: bool = False,
        manifest_extra: Mapping[str, Any] | None = None,
        indices: Iterable[int] | None = None,
    ):
        if docs_per_shard < 1 or row_group_size < 1:
            raise ValueError("docs_per_shard and row_group_size must be >= 1")
        if not prefix or "/" in prefix or prefix.startswith("."):
            raise ValueError(f"bad shard prefix {prefix!r}")
        if indices is not None and (overwrite or resume):
            raise ValueError("a writer given indices writes a part: no overwrite or resume")
        self.out_dir = Path(out_dir)
        self.manifest_extra = dict(manifest_extra or {})
        self.prefix = prefix
        self.docs_per_shard = docs_per_shard
        self.row_group_size = min(row_group_size, docs_per_shard)
        # A part writer's directory is the caller's: other writers' shards may be there.
        self._part = indices is not None
        self._indices = iter(indices) if indices is not None else None
        self._index: int | None = None  # number of the shard being written
        self.out_dir.mkdir(parents=True, exist_ok=True)
        existing = [] if self._part else sorted(self.out_dir.glob(f"{prefix}-*.parquet"))
        taken = existing or (not self._part and (self.out_dir / MANIFEST_NAME).exists())
        if taken and not (overwrite or resume):
            raise FileExistsError(
                f"{self.out_dir} already contains shards ({prefix}-*.parquet or "
                f"{MANIFEST_NAME}); choose another directory or pass overwrite=True"
            )
        self._stale = existing
        if overwrite:
            # The old run's manifest would describe shards that are about to be replaced.
            (self.out_dir / MANIFEST_NAME).unlink(missing_ok=True)
        self._rows: dict[str, list[Any]] = {name: [] for name in SHARD_SCHEMA.names}
        self._emb_dim: int | None = None
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._shard_docs = 0
        self._shard_sents = 0
        self._shards: list[dict[str, Any]] = []
        self._paths: list[Path] = []
        self._closed = False
        self.resumed_docs = 0
        self.last_resumed_doc_id: str | None = None
        if resume:
            self._adopt_complete_shards()

    # -- public API ---------------------------------------------------------------------------

    @property
    def embedding_dim(self) -> int | None:
        """``D`` of the embeddings written so far (kept shards included), if any."""
        return self._emb_dim

    @property
    def records(self) -> list[dict[str, Any]]:
        """``{"file", "n_docs", "n_sentences"}`` of each finished shard, as the manifest lists
        them."""
        return [dict(s) for s in self._shards]

    def write(
        self,
        doc_id: str,
        sentences: Sequence[str],
        source: str = "",
        embeddings: np.ndarray | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one document.

        Args:
            doc_id: Document id (non-empty).
            sentences: The document's sentences (a sequence of str, at least one).
            source: Where the document came from.
            embeddings: Optional ``[len(sentences), D]`` array of finite values, stored as
                float32; ``D`` must be the same for every document of this writer.
            meta: Optional JSON-serializable mapping, stored as ``meta_json``.

        Raises:
            ValueError: On invalid input (nothing is written for this document).
            RuntimeError: If the writer is closed.
        """
        if self._closed:
            raise RuntimeError("ShardWriter is closed")
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError(f"doc_id must be a non-empty string, got {doc_id!r}")
        if isinstance(sentences, str):
            raise ValueError(f"{doc_id}: sentences must be a sequence of str, not one str")
        sents = list(sentences)
        if not all(isinstance(s, str) for s in sents):
            raise ValueError(f"{doc_id}: sentences must be a sequence of str")
        if not sents:
            raise ValueError(f"{doc_id}: a document needs at least one sentence")
        emb = self._check_embeddings(doc_id, embeddings, len(sents))
        try:
            meta_json = json.dumps(dict(meta or {}), ensure_ascii=False, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{doc_id}: meta is not JSON-serializable: {e}") from e

        rows = self._rows
        rows["doc_id"].append(doc_id)
        rows["source"].append(source)
        rows["sentences"].append(sents)
        rows["embeddings"].append(emb)
        rows["meta_json"].append(meta_json)
        self._shard_docs += 1
        self._shard_sents += len(sents)
        if len(rows["doc_id"]) >= self.row_group_size:
            self._flush_row_group()
        if self._shard_docs >= self.docs_per_shard:
            self._finish_shard()

    def close(self) -> list[Path]:
        """Finish the last shard, write ``manifest.json`` and return the shard paths.

        Calling it again returns the same list.
        """
        if self._closed:
            return list(self._paths)
        try:
            if self._shard_docs:
                self._finish_shard()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        if self._part:
            return list(self._paths)
        write_manifest(
            self.out_dir,
            self._shards,
            prefix=self.prefix,
            embedding_dim=self._emb_dim,
            extra=self.manifest_extra,
        )
        keep = set(self._paths)
        for old in self._stale:  # overwrite=True: drop shards of the previous run
            if old not in keep:
                old.unlink(missing_ok=True)
        return list(self._paths)

    def abort(self) -> None:
        """Discard the unfinished shard (temporary file) without writing a manifest."""
        self._closed = True
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - best effort: the file is deleted anyway
                pass
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
        for rows in self._rows.values():
            rows.clear()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped without close() (e.g. a crash in the caller) must not leave
        # temporary files behind; it never publishes a partial shard.
        if not getattr(self, "_closed", True) and getattr(self, "_tmp", None) is not None:
            self.abort()

    # -- internals ----------------------------------------------------------------------------

    def _check_embeddings(
        self, doc_id: str, embeddings: np.ndarray | None, n_sentences: int
    ) -> np.ndarray | None:
        """Validate shape, dtype and finiteness; return a C-contiguous float32 copy."""
        if embeddings is None:
            return None
        try:
            emb = np.asarray(embeddings, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{doc_id}: embeddings are not a float array: {e}") from e
        if emb.ndim != 2 or emb.shape[0] != n_sentences or emb.shape[1] < 1:
            raise ValueError(
                f"{doc_id}: embeddings must have shape [{n_sentences}, D], got {emb.shape}"
            )
        if self._emb_dim is not None and emb.shape[1] != self._emb_dim:
            raise ValueError(
                f"{doc_id}: embedding dim {emb.shape[1]} differs from {self._emb_dim} "
                "used earlier in this writer"
            )
        if not np.isfinite(emb).all():
            raise ValueError(f"{doc_id}: embeddings contain NaN or Inf")
        self._emb_dim = emb.shape[1]
        return np.ascontiguousarray(emb)

    def _embeddings_array(self, embs: list[np.ndarray | None]) -> pa.Array:
        """Build the list<list<float32>> column from numpy arrays without Python loops."""
        typ = SHARD_SCHEMA.field("embeddings").type
        present = [e for e in embs if e is not None]
        if not present:
            return pa.nulls(len(embs), type=typ)
        dim = present[0].shape[1]
        values = pa.array(np.concatenate([e.reshape(-1) for e in present]), type=pa.float32())
        n_vectors = sum(e.shape[0] for e in present)
        inner = pa.ListArray.from_arrays(
            pa.array(np.arange(n_vectors + 1, dtype=np.int32) * dim), values
        )
        counts = np.array([0 if e is None else e.shape[0] for e in embs], dtype=np.int32)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        mask = pa.array([e is None for e in embs])
        return pa.ListArray.from_arrays(pa.array(offsets), inner, type=typ, mask=mask)

    def _flush_row_group(self) -> None:
        rows = self._rows
        if not rows["doc_id"]:
            return
        table = pa.table(
            {
                "doc_id": pa.array(rows["doc_id"], type=pa.string()),
                "source": pa.array(rows["source"], type=pa.string()),
                "sentences": pa.array(rows["sentences"], type=pa.list_(pa.string())),
                "embeddings": self._embeddings_array(rows["embeddings"]),
                "meta_json": pa.array(rows["meta_json"], type=pa.string()),
            },
            schema=SHARD_SCHEMA,
        )
        if self._writer is None:
            # Kept shards (resume) come first: the next number follows them.
            self._index = len(self._shards) if self._indices is None else next(self._indices)
            final = self._final_path(self._index)
            self._tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
            self._writer = pq.ParquetWriter(self._tmp, SHARD_SCHEMA, compression="zstd")
        self._writer.write_table(table, row_group_size=len(table))
        for r in rows.values():
            r.clear()

    def _finish_shard(self) -> None:
        self._flush_row_group()
        assert self._writer is not None and self._tmp is not None
        self._writer.close()
        self._writer = None
        assert self._index is not None
        final = self._final_path(self._index)
        _fsync_file(self._tmp)
        os.replace(self._tmp, final)  # atomic publish of a complete shard
        self._tmp = None
        self._shards.append(
            {"file": final.name, "n_docs": self._shard_docs, "n_sentences": self._shard_sents}
        )
        self._paths.append(final)
        self._shard_docs = self._shard_sents = 0

    def _adopt_complete_shards(self) -> None:
        """Take over the gap-free complete shards of an interrupted run (see ``resume``)."""
        for tmp in self.out_dir.glob(f".{self.prefix}-*.parquet.tmp-*"):
            tmp.unlink(missing_ok=True)  # unfinished shards of the interrupted run
        finished = (self.out_dir / MANIFEST_NAME).is_file()  # a complete run: its last shard
        index = 0  # may be short
        while (path := self._final_path(index)).is_file():
            summary = read_shard_summary(path)
            n_docs = len(summary.doc_ids)
            last = not self._final_path(index + 1).is_file()
            if n_docs != self.docs_per_shard and not (finished and last):
                raise ValueError(
                    f"{path} holds {n_docs} documents, not docs_per_shard="
                    f"{self.docs_per_shard}: resume needs the docs_per_shard of the run "
                    "that wrote it"
                )
            dim = summary.embedding_dim
            if dim is not None:
                if self._emb_dim is not None and dim != self._emb_dim:
                    raise ValueError(f"{path}: embedding dim {dim} differs from {self._emb_dim}")
                self._emb_dim = dim
            self._shards.append(
                {"file": path.name, "n_docs": n_docs, "n_sentences": summary.n_sentences}
            )
            self._paths.append(path)
            self.resumed_docs += n_docs
            self.last_resumed_doc_id = summary.doc_ids[-1] if n_docs else None
            index += 1
        kept = set(self._paths)
        self._stale = [p for p in self._stale if p not in kept]
        (self.out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # close() writes the new one

    def _final_path(self, index: int) -> Path:
        return self.out_dir / shard_name(index, self.prefix)


def _shard_files(path: Path) -> list[Path]:
    """Shard files of a file or directory (the manifest's list when there is one)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or directory", path=str(path))
    manifest = path / MANIFEST_NAME
    if manifest.exists():
        try:
            info = json.loads(manifest.read_text(encoding="utf-8"))
            files = [path / s["file"] for s in info["shards"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{manifest}: unreadable manifest: {e}", path=str(manifest)) from e
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise DataError(f"{manifest}: listed shard(s) missing: {', '.join(missing[:3])}")
        return files
    # No manifest (e.g. shards written by hand): every visible Parquet file, in name order.
    return sorted(f for f in path.glob("*.parquet") if not f.name.startswith("."))


def read_shards(
    path_or_dir: str | os.PathLike[str], columns: Sequence[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Stream the rows (documents) of one shard file or a shard directory.

    Reads one row group at a time, so memory stays bounded by ``row_group_size``.

    Args:
        path_or_dir: A ``.parquet`` shard, or a directory (its ``manifest.json`` decides the
            shards when present, else all ``*.parquet`` files in name order).
        columns: Columns to read (default: all of ``SHARD_SCHEMA``).

    Yields:
        One dict per document: ``doc_id`` (str), ``source`` (str), ``sentences``
        (list[str]), ``embeddings`` (``np.ndarray`` float32 ``[n_sentences, D]`` or None) and
        ``meta_json`` (str; ``json.loads`` it for the meta mapping), restricted to ``columns``.

    Raises:
        DataError: If the path does not exist, a column is unknown, or a file is not a
            readable Parquet shard.
    """
    cols = list(columns) if columns is not None else list(SHARD_SCHEMA.names)
    unknown = [c for c in cols if c not in SHARD_SCHEMA.names]
    if unknown:
        raise DataError(f"unknown shard column(s) {unknown}; expected {SHARD_SCHEMA.names}")
    files = _shard_files(Path(path_or_dir))
    return _iter_rows(files, cols)


def _iter_rows(files: list[Path], cols: list[str]) -> Iterator[dict[str, Any]]:
    for f in files:
        try:
            pf = pq.ParquetFile(f)
            n_groups = pf.num_row_groups
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{f}: not a readable Parquet shard: {e}", path=str(f)) from e
        for g in range(n_groups):
            try:
                table = pf.read_row_group(g, columns=cols)
            except (OSError, pa.ArrowException) as e:
                raise DataError(f"{f}: row group {g}: {e}", path=str(f)) from e
            data = {c: table.column(c) for c in cols}
            py = {c: data[c].to_pylist() for c in cols if c != "embeddings"}
            embs = _embeddings_to_numpy(data["embeddings"]) if "embeddings" in cols else None
            for i in range(table.num_rows):
                row = {c: py[c][i] for c in py}
                if embs is not None:
                    row["embeddings"] = embs[i]
                yield {c: row[c] for c in cols}


def _embeddings_to_numpy(col: pa.ChunkedArray) -> list[np.ndarray | None]:
    """list<list<float32>> column -> per-row float32 arrays [n, D] (None for null rows).

    Works on the offset buffers (no per-element Python objects): row ``i`` owns vectors
    ``offs[i]:offs[i+1]`` of the inner list array, which own floats ``ioffs[a]:ioffs[b]``.
    """
    out: list[np.ndarray | None] = []
    for chunk in col.chunks:
        if chunk.null_count == len(chunk):
            out.extend([None] * len(chunk))
            continue
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        offs = chunk.offsets.to_numpy()
        inner = chunk.values
        ioffs = inner.offsets.to_numpy()
        flat = inner.values.to_numpy(zero_copy_only=False)
        for i in range(len(chunk)):
            if not valid[i]:
                out.append(None)
                continue
            a, b = offs[i], offs[i + 1]
            vals = flat[ioffs[a] : ioffs[b]]
            # Copy: rows must not alias one shared read-only Arrow buffer.
            out.append(np.array(vals, dtype=np.float32).reshape(b - a, -1 if b > a else 0))
    return out


def write_documents(
    docs: Iterable[Document],
    out_dir: str | os.PathLike[str],
    max_chars: int = 256,
    docs_per_shard: int = 10_000,
    progress: bool = True,
    *,
    prefix: str = "shard",
    row_group_size: int = 1_000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Segment documents into sentences and write them as Parquet shards.

    Args:
        docs: Documents, e.g. from :func:`lcm.text.readers.iter_documents`.
        out_dir: Output directory (see :class:`ShardWriter`).
        max_chars: Sentence length cap passed to ``segment_document``.
        docs_per_shard: Documents per shard file.
        progress: Show a tqdm progress bar on stderr.
        prefix: Shard file name prefix.
        row_group_size: Documents per Parquet row group.
        overwrite: Allow replacing shards already in ``out_dir``.

    Returns:
        Stats: ``documents_in``, ``documents_written``, ``skipped_no_sentences``,
        ``sentences``, ``sentence_chars_max``, ``sentence_chars_mean`` and ``shards``
        (list of shard paths as str).
    """
    from tqdm import tqdm  # imported here: only this entry point draws a progress bar

    n_in = n_out = n_empty = n_sents = n_chars = max_len = 0
    # --overwrite writes beside the old shards and swaps only on success: a failing run (no
    # documents, a bad record under --strict) leaves them as they were.
    staged = replaced_on_success(out_dir) if overwrite else contextlib.nullcontext(out_dir)
    with staged as target, ShardWriter(target, prefix, docs_per_shard, row_group_size) as w:
        for doc in tqdm(docs, desc="documents", unit="doc", disable=not progress, file=sys.stderr):
            n_in += 1
            sents = segment_document(doc.paragraphs, max_chars)
            if not sents:
                n_empty += 1  # counted and reported, never silently dropped
                continue
            meta = dict(doc.meta)
            w.write(doc.id, sents, source=doc.source, meta=meta)
            n_out += 1
            n_sents += len(sents)
            lens = [len(s) for s in sents]
            n_chars += sum(lens)
            max_len = max(max_len, *lens)
        if not n_out:
            raise DataError(
                f"no documents written ({n_in} read, {n_empty} without sentences)",
                path=str(out_dir),
            )
    return {
        "documents_in": n_in,
        "documents_written": n_out,
        "skipped_no_sentences": n_empty,
        "sentences": n_sents,
        "sentence_chars_max": max_len,
        "sentence_chars_mean": round(n_chars / n_sents, 1) if n_sents else math.nan,
        "shards": [str(Path(out_dir) / p.name) for p in w.close()],  # staged paths moved
    }


def read_space(shards: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The space record (:data:`SPACE_FILE`) of an embedded dataset, or None if it has none."""
    base = Path(shards)
    path = (base.parent if base.is_file() else base) / SPACE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"{path}: unreadable ({e})", path=str(path)) from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: not a space record", path=str(path))
    return record

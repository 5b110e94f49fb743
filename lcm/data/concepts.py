"""LCM training data: documents as sequences of normalized concept vectors, in batches.

Pipeline: documents (Parquet shards whose ``embeddings`` column is filled, or a synthetic
source) -> the end-of-text concept appended to each document -> normalized with the fitted
:class:`~lcm.data.normalizer.Normalizer` -> one in-memory ``float32 [N, D]`` array plus
document offsets (:class:`ConceptSet`) -> documents longer than ``max_seq_len`` wrapped into
pieces -> pieces packed (best fit) or padded into rows of ``max_seq_len`` -> batches of rows.

A batch (:meth:`ConceptSource.batch`) is a pure function of (seed, step, row): row ``r`` of
the global batch at ``step`` is row ``perm_e[i]`` of the packed table, where
``i = (step * batch_size + r) mod n_rows``, ``e`` is the epoch and ``perm_e`` a permutation
seeded by (seed, e); each process builds only its own rows. Arrays of a batch:

- ``concepts [B, T, D]`` float32, normalized, zero at padding;
- ``segment_ids [B, T]`` int32: 1, 2, ... for the pieces of a packed row, 0 for padding;
- ``positions [B, T]`` int32: position of each concept within its piece (from 0);
- ``mask [B, T]`` bool: ``segment_ids > 0``;
- ``loss_mask [B, T]`` bool: the concepts a loss predicts. A fine-tuning document (from
  :mod:`lcm.data.tasks`) starts with ``context`` concepts (the task input and its marker,
  counted in its ``meta_json``) that are only read; every other real concept is a target.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from lcm.data.normalizer import Method, Normalizer
from lcm.data.shards import EOT_FILE, read_shards, read_space
from lcm.io import load_vector
from lcm.text.readers import DataError


class RawDocument(NamedTuple):
    """One document as stored, before the EOT concept and normalization.

    Attributes:
        doc_id: Document id.
        vectors: [n, D] float32 raw concepts.
        context: Leading concepts that are input only, never a loss target (fine-tuning).
    """

    doc_id: str
    vectors: np.ndarray
    context: int = 0


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """A codec-free source of structured concept sequences (for tests and tiny configs).

    Each document is a stationary random walk ``z_{t+1} = rho R z_t + sqrt(1 - rho^2) e_t``
    (``R`` a fixed random rotation, ``e_t`` standard normal), shown through a fixed
    per-dimension affine map ``x = scale * z + offset`` so the normalizer has work to do. The
    best next-concept predictor has mean squared error ``1 - rho^2`` per normalized dimension.

    Attributes:
        dim: Concept size D.
        num_docs: Number of documents (before the split).
        min_len: Shortest document (concepts, before the end-of-text concept).
        max_len: Longest document.
        rho: Correlation of consecutive concepts.
        seed: Seed of the rotation, the affine map and the documents.
    """

    dim: int = 16
    num_docs: int = 512
    min_len: int = 4
    max_len: int = 48
    rho: float = 0.95
    seed: int = 1234

    def __post_init__(self) -> None:
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}")
        if not 0.0 <= self.rho < 1.0:
            raise ValueError(f"rho must be in [0, 1), got {self.rho}")


@dataclasses.dataclass(frozen=True)
class ConceptDataConfig:
    """Data section of every concept-model task.

    Attributes:
        source: "shards" (Parquet shards with embeddings) or "synthetic".
        shards: Shard directory or file (source "shards").
        normalizer: ``normalizer.npz`` (``lcm data fit-normalizer``); empty: fit
            ``normalizer_method`` on the training split when loading (synthetic source only).
        normalizer_method: Method of a normalizer fitted on the fly.
        eot: End-of-text concept: "auto" (``<shards>/eot.npy``, or a fixed vector of the
            synthetic source), "none" (append nothing) or the path of a ``[D]`` ``.npy``.
        max_seq_len: Row length T; longer documents are wrapped into pieces of T concepts.
        pack: Pack several pieces per row (best fit); otherwise one piece per padded row.
        split: Which documents: "train", "valid" (a ``valid_fraction`` chosen by a hash of the
            document id) or "all".
        valid_fraction: Fraction of documents held out as "valid".
        synthetic: The synthetic source.
    """

    source: Literal["shards", "synthetic"] = "synthetic"
    shards: str = ""
    normalizer: str = ""
    normalizer_method: Method = "gaussian_robust"
    eot: str = "auto"
    max_seq_len: int = 64
    pack: bool = True
    split: Literal["train", "valid", "all"] = "train"
    valid_fraction: float = 0.02
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        if self.max_seq_len < 2:
            raise ValueError(f"max_seq_len must be >= 2, got {self.max_seq_len}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if self.source == "shards" and not self.shards:
            raise ValueError("source 'shards' needs data.shards (a shard directory or file)")


@dataclasses.dataclass(frozen=True, eq=False)
class ConceptSet:
    """Documents as one array of normalized concepts.

    Attributes:
        vectors: [N, D] float32, the concepts of all documents back to back.
        offsets: [num_docs + 1] int64; document ``i`` is ``vectors[offsets[i]:offsets[i+1]]``.
        doc_ids: The document ids.
        targets: [N] bool, the concepts a loss predicts (False on fine-tuning inputs).
    """

    vectors: np.ndarray
    offsets: np.ndarray
    doc_ids: tuple[str, ...]
    targets: np.ndarray

    @property
    def dim(self) -> int:
        """D, the concept size."""
        return int(self.vectors.shape[1])

    @property
    def num_docs(self) -> int:
        """Number of documents."""
        return len(self.doc_ids)

    def doc(self, i: int) -> np.ndarray:
        """The concepts of document ``i``: [n_i, D]."""
        return self.vectors[self.offsets[i] : self.offsets[i + 1]]


def in_split(doc_id: str, split: str, valid_fraction: float) -> bool:
    """Whether ``doc_id`` belongs to ``split`` (a stable hash decides, not the order)."""
    if split == "all":
        return True
    is_valid = zlib.crc32(doc_id.encode("utf-8")) % 1_000_000 < valid_fraction * 1_000_000
    return is_valid == (split == "valid")


# --- raw documents -------------------------------------------------------------------------


def _synthetic_map(cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rotation [D, D], per-dimension scale [D] and offset [D] of a synthetic source."""
    rng = np.random.default_rng([cfg.seed, 0])
    q, r = np.linalg.qr(rng.normal(size=(cfg.dim, cfg.dim)))
    rotation = q * np.sign(np.diag(r))
    scale = np.exp(rng.normal(0.0, 0.5, cfg.dim))
    offset = rng.normal(0.0, 1.0, cfg.dim)
    return rotation, scale, offset


def _synthetic_documents(cfg: SyntheticConfig) -> Iterator[RawDocument]:
    rotation, scale, offset = _synthetic_map(cfg)
    noise_std = np.sqrt(1.0 - cfg.rho**2)
    for i in range(cfg.num_docs):
        rng = np.random.default_rng([cfg.seed, 1, i])
        n = int(rng.integers(cfg.min_len, cfg.max_len + 1))
        z = np.empty((n, cfg.dim))
        z[0] = rng.normal(size=cfg.dim)
        for t in range(1, n):
            z[t] = cfg.rho * rotation @ z[t - 1] + noise_std * rng.normal(size=cfg.dim)
        yield RawDocument(f"synthetic-{i:06d}", (z * scale + offset).astype(np.float32))


def _context_of(meta_json: str | None, n: int, doc_id: str, path: str) -> int:
    """The ``context`` count of a document's metadata (0 without one), checked against ``n``."""
    if not meta_json or '"context"' not in meta_json:
        return 0
    context = json.loads(meta_json).get("context", 0)
    if not isinstance(context, int) or not 0 <= context < n:
        raise DataError(
            f"{path}: document {doc_id!r} has meta context={context!r}; need an int in "
            f"[0, {n}) (its number of input concepts)",
            path=str(path),
        )
    return context


def _shard_documents(path: str) -> Iterator[RawDocument]:
    for row in read_shards(path, columns=["doc_id", "embeddings", "meta_json"]):
        emb = row["embeddings"]
        if emb is None:
            raise DataError(
                f"{path}: document {row['doc_id']!r} has no embeddings; fill them first with "
                "`lcm data embed`",
                path=str(path),
            )
        context = _context_of(row["meta_json"], len(emb), row["doc_id"], path)
        yield RawDocument(row["doc_id"], emb, context)


def iter_raw_documents(cfg: ConceptDataConfig) -> Iterator[RawDocument]:
    """The documents of ``cfg.split`` as stored (no EOT, not normalized)."""
    docs = (
        _synthetic_documents(cfg.synthetic)
        if cfg.source == "synthetic"
        else _shard_documents(cfg.shards)
    )
    for doc in docs:
        if in_split(doc.doc_id, cfg.split, cfg.valid_fraction):
            yield doc


def eot_vector(cfg: ConceptDataConfig) -> np.ndarray | None:
    """The raw end-of-text concept [D] appended to every document, or None."""
    if cfg.eot == "none":
        return None
    if cfg.eot == "auto" and cfg.source == "synthetic":
        _, scale, offset = _synthetic_map(cfg.synthetic)
        direction = np.random.default_rng([cfg.synthetic.seed, 2]).normal(size=cfg.synthetic.dim)
        return (offset + 3.0 * scale * direction / np.linalg.norm(direction)).astype(np.float32)
    if cfg.eot == "auto":
        base = Path(cfg.shards)
        path = (base.parent if base.is_file() else base) / EOT_FILE
    else:
        path = Path(cfg.eot)
    if not path.is_file():
        raise FileNotFoundError(
            f"end-of-text concept not found: {path} (`lcm data embed` writes it; or set "
            "data.eot to a .npy path, or to 'none')"
        )
    return load_vector(path)


@functools.lru_cache(maxsize=4)
def concept_normalizer(cfg: ConceptDataConfig) -> Normalizer:
    """The normalizer of ``cfg``: loaded from ``cfg.normalizer``, or fitted on the train split."""
    if cfg.normalizer:
        return Normalizer.load(cfg.normalizer)
    if cfg.source != "synthetic":
        raise ValueError(
            "data.normalizer is required for shards: fit one with `lcm data fit-normalizer`"
        )
    train = dataclasses.replace(cfg, split="train")
    sample = np.concatenate([doc.vectors for doc in iter_raw_documents(train)])
    return Normalizer.fit(sample, method=cfg.normalizer_method)


# --- the in-memory concept set -------------------------------------------------------------


def _manifest_counts(path: str) -> tuple[int, int] | None:
    """(documents, sentences) listed by a shard directory's manifest, if there is one."""
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
        return int(info["n_docs"]), int(info["n_sentences"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_same_space(
    cfg: ConceptDataConfig, normalizer: Normalizer, eot: np.ndarray | None
) -> None:
    """Refuse shards of another concept space than the normalizer's or the EOT concept's.

    The shards' space record (``lcm data embed``) names their codec; a normalizer fitted on
    another codec's vectors, or an end-of-text concept far from the one embedded beside the
    shards, would train in a mixed space without any error.

    Raises:
        DataError: Naming what disagrees.
    """
    base = Path(cfg.shards)
    folder = base.parent if base.is_file() else base
    codec = (read_space(cfg.shards) or {}).get("codec")
    if codec and normalizer.codec and codec != normalizer.codec:
        raise DataError(
            f"{cfg.normalizer} was fitted on vectors of codec {normalizer.codec}, but "
            f"{cfg.shards} holds vectors of codec {codec}: fit a normalizer on these shards "
            "(`lcm data fit-normalizer`)",
            path=str(cfg.normalizer),
        )
    own = folder / EOT_FILE
    if eot is not None and cfg.eot not in ("auto", str(own)) and own.is_file():
        ref = np.load(own, allow_pickle=False).astype(np.float32).reshape(-1)
        far = ref.shape != eot.shape or np.linalg.norm(eot - ref) > 1e-3 * np.linalg.norm(ref)
        if far:
            raise DataError(
                f"data.eot {cfg.eot} is not the end-of-text concept of {cfg.shards} ({own}): "
                "it comes from another codec or precision; use data.eot=auto",
                path=str(cfg.eot),
            )


@functools.lru_cache(maxsize=4)
def load_concepts(cfg: ConceptDataConfig) -> ConceptSet:
    """Stream the documents of ``cfg.split``, append the EOT concept and normalize.

    The vectors are written into one growing float32 buffer (sized from the shard manifest
    when there is one), so memory stays close to the size of the result.

    Raises:
        DataError: A document has no embeddings, or the dimensions disagree.
        ValueError: No document is in the split.
    """
    normalizer = concept_normalizer(cfg)
    eot = eot_vector(cfg)
    d = normalizer.dim
    if eot is not None and eot.shape != (d,):
        raise DataError(f"end-of-text concept has shape {eot.shape}, the normalizer needs ({d},)")
    if cfg.source == "shards":
        check_same_space(cfg, normalizer, eot)
    extra = 0 if eot is None else 1
    counts = _manifest_counts(cfg.shards) if cfg.source == "shards" else None
    capacity = 0 if counts is None else counts[1] + extra * counts[0]
    buf = np.empty((max(capacity, 1 << 12), d), np.float32)
    offsets, ids, contexts, n = [0], [], [], 0
    for doc_id, vectors, context in iter_raw_documents(cfg):
        if vectors.ndim != 2 or vectors.shape[1] != d or len(vectors) == 0:
            raise DataError(
                f"document {doc_id!r}: embeddings of shape {vectors.shape}, need [n, {d}]"
            )
        need = n + len(vectors) + extra
        if need > len(buf):
            grown = np.empty((max(need, 2 * len(buf)), d), np.float32)
            grown[:n] = buf[:n]
            buf = grown
        buf[n : n + len(vectors)] = vectors
        if eot is not None:
            buf[n + len(vectors)] = eot
        buf[n:need] = normalizer.normalize(buf[n:need])
        n = need
        offsets.append(n)
        ids.append(doc_id)
        contexts.append(context)
    if not ids:
        raise ValueError(f"no documents in split {cfg.split!r} of {cfg.source} data")
    targets = np.ones(n, bool)
    for start, context in zip(offsets, contexts):
        targets[start : start + context] = False
    return ConceptSet(buf[:n], np.asarray(offsets, np.int64), tuple(ids), targets)


# --- rows: wrapping, packing, padding -------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class RowTable:
    """Rows of ``T`` concept slots.

    Attributes:
        index: [R, T] int64 index into ``ConceptSet.vectors`` (-1 = padding).
        segment_ids: [R, T] int32 (0 = padding).
        positions: [R, T] int32.
    """

    index: np.ndarray
    segment_ids: np.ndarray
    positions: np.ndarray

    @property
    def num_rows(self) -> int:
        """R."""
        return int(self.index.shape[0])


def wrap_pieces(offsets: np.ndarray, max_len: int) -> np.ndarray:
    """Cut documents into pieces of at most ``max_len`` concepts: ``[P, 2]`` (start, length)."""
    pieces = []
    for start, end in zip(offsets[:-1], offsets[1:]):
        for s in range(int(start), int(end), max_len):
            pieces.append((s, min(max_len, int(end) - s)))
    return np.asarray(pieces, np.int64).reshape(-1, 2)


def pack_rows(lengths: np.ndarray, capacity: int) -> list[list[int]]:
    """Best-fit packing of pieces (in the given order) into rows of ``capacity`` slots.

    Each piece goes to the open row with the least room that still holds it, else to a new row.

    Returns:
        For each row, the indices of its pieces.
    """
    rows: list[list[int]] = []
    open_by_room: list[list[int]] = [[] for _ in range(capacity + 1)]  # room -> row ids
    count = np.zeros(capacity + 1, np.int64)
    for piece, length in enumerate(lengths.tolist()):
        fits = np.flatnonzero(count[length:])
        if fits.size:
            room = length + int(fits[0])
            row = open_by_room[room].pop()
            count[room] -= 1
        else:
            room, row = capacity, len(rows)
            rows.append([])
        rows[row].append(piece)
        left = room - length
        if left > 0:
            open_by_room[left].append(row)
            count[left] += 1
    return rows


def build_rows(concepts: ConceptSet, max_len: int, pack: bool, seed: int) -> RowTable:
    """Wrap, (shuffle and pack, or pad) the documents into a :class:`RowTable`."""
    pieces = wrap_pieces(concepts.offsets, max_len)
    if pack:
        order = np.random.default_rng([seed, 0xC0]).permutation(len(pieces))
        rows = [[int(order[i]) for i in row] for row in pack_rows(pieces[order, 1], max_len)]
    else:
        rows = [[i] for i in range(len(pieces))]
    index = np.full((len(rows), max_len), -1, np.int64)
    segment_ids = np.zeros((len(rows), max_len), np.int32)
    positions = np.zeros((len(rows), max_len), np.int32)
    for r, members in enumerate(rows):
        col = 0
        for seg, p in enumerate(members, start=1):
            start, length = pieces[p]
            index[r, col : col + length] = np.arange(start, start + length)
            segment_ids[r, col : col + length] = seg
            positions[r, col : col + length] = np.arange(length)
            col += length
    return RowTable(index, segment_ids, positions)


def gather_rows(concepts: ConceptSet, table: RowTable, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The batch arrays (see the module docstring) of ``rows`` [B] of ``table``."""
    index = table.index[rows]
    vectors = concepts.vectors[np.maximum(index, 0)]
    vectors[index < 0] = 0.0
    segment_ids = table.segment_ids[rows]
    return {
        "concepts": vectors,
        "segment_ids": segment_ids,
        "positions": table.positions[rows],
        "mask": segment_ids > 0,
        "loss_mask": concepts.targets[np.maximum(index, 0)] & (index >= 0),
    }


class RowOrder:
    """Which rows of a table of ``num_rows`` each step reads: epoch after epoch, each in the
    order of a permutation seeded by (seed, epoch), ``batch_size`` rows per step.

    Row ``r`` of the global batch at ``step`` is ``perm_e[i]``, ``i = (step * batch_size + r)
    mod num_rows``, so the order is a pure function of (seed, step).

    Args:
        num_rows: Rows of the table.
        batch_size: Global batch size.
        seed: Seed of the permutations.
        first_row: This process's first row of the global batch.
        local_batch_size: Rows this process reads (default: all of them).
    """

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        seed: int,
        first_row: int = 0,
        local_batch_size: int | None = None,
    ):
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.seed = seed
        self.first_row = first_row
        self.local_batch_size = batch_size if local_batch_size is None else local_batch_size
        self._perm_epoch = -1
        self._perm = np.arange(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.seed, 0xE0, epoch])
            self._perm, self._perm_epoch = rng.permutation(self.num_rows), epoch
        return self._perm

    def rows(self, step: int, *, global_batch: bool = False) -> np.ndarray:
        """Row indices [local_batch_size] of this process at ``step``, or with
        ``global_batch`` those of every process [batch_size], in process order."""
        if global_batch:
            first, count = step * self.batch_size, self.batch_size
        else:
            first, count = step * self.batch_size + self.first_row, self.local_batch_size
        slots = first + np.arange(count)
        n = self.num_rows
        rows = np.empty(len(slots), np.int64)
        for epoch in np.unique(slots // n):
            here = slots // n == epoch
            rows[here] = self._permutation(int(epoch))[slots[here] % n]
        return rows


class ConceptSource:
    """The batch source (``trainers.task.BatchSource``) of the concept models.

    Args:
        cfg: Data config.
        batch_size: Global batch size.
        seed: Data seed (packing and row order).
        process_index: This process's index.
        process_count: Number of processes (must divide ``batch_size``).
    """

    def __init__(
        self,
        cfg: ConceptDataConfig,
        *,
        batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if batch_size % process_count:
            raise ValueError(f"batch_size {batch_size} is not divisible by {process_count}")
        self.cfg = cfg
        self.batch_size = batch_size
        self.seed = seed
        self.local_batch_size = batch_size // process_count
        self.first_row = process_index * self.local_batch_size
        self.concepts = load_concepts(cfg)
        self.table = build_rows(self.concepts, cfg.max_seq_len, cfg.pack, seed)
        self.order = RowOrder(
            self.table.num_rows, batch_size, seed, self.first_row, self.local_batch_size
        )

    def rows(self, step: int, *, global_batch: bool = False) -> np.ndarray:
        """Indices into :attr:`table` of this process's rows at ``step`` (or, with
        ``global_batch``, of every process's rows, in process order): [B]."""
        return self.order.rows(step, global_batch=global_batch)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of the global batch at ``step``."""
        return gather_rows(self.concepts, self.table, self.rows(step))

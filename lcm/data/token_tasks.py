"""The LCM's task documents as token rows, for the token-level peer (:mod:`lcm.models.token_lm`).

Each pair of the split gives the same documents as ``lcm data build-tasks --plain``, written
as text in the codec's tokens:

- summarize: ``document [SUMMARY]:`` (read only) then `` summary`` EOS (the targets);
- expand: ``summary [EXPAND]:`` then `` document`` EOS;
- plain (``plain``): ``document`` EOS, every token a target.

A sequence longer than ``max_len`` tokens keeps the end of its context (next to the marker,
as generation reads a long input) and the start of its target, the context at least half
the row when it is that long. Sequences are packed (best fit, in a seeded order) into rows of
``max_len`` tokens. A batch:

- ``tokens [B, T]`` int32 (PAD = 0 at padding);
- ``segment_ids [B, T]`` int32 (1, 2, ... per sequence, 0 = padding), ``positions [B, T]``;
- ``loss_mask [B, T]`` bool: the tokens a loss predicts.

Rows per step follow :class:`~lcm.data.concepts.RowOrder`, a pure function of (seed, step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from encoders.tokenizer import EOS_ID
from lcm.data.concepts import RowOrder, pack_rows
from lcm.data.tasks import TASK_MARKERS
from lcm.text.readers import read_documents


@dataclasses.dataclass(frozen=True)
class TokenTaskDataConfig:
    """Data section of the ``token_lm`` family.

    Attributes:
        pairs: The pairs JSONL (``{"summary", "document", "split"}`` records, .gz ok).
        split: Records of this split.
        plain: Also train on each document alone.
        max_len: Row length T in tokens (longer sequences are cut).
    """

    pairs: str = ""
    split: str = "train"
    plain: bool = True
    max_len: int = 256

    def __post_init__(self) -> None:
        if not self.pairs:
            raise ValueError("data.pairs is required (a pairs JSONL file)")
        if self.max_len < 8:
            raise ValueError(f"max_len must be >= 8, got {self.max_len}")


def task_texts(path: str, split: str, plain: bool) -> list[tuple[str, str]]:
    """``(context, target)`` texts of every task document of ``split`` (see the module)."""
    out = []
    for doc in read_documents(path, "pairs", split=split):
        document = " ".join(doc.text.split())
        summary = " ".join(str(doc.meta.get("summary", "")).split())
        if not document or not summary:
            continue
        out.append((f"{document} {TASK_MARKERS['summarize']}", summary))
        out.append((f"{summary} {TASK_MARKERS['expand']}", document))
        if plain:
            out.append(("", document))
    if not out:
        raise ValueError(f"{path}: no summary/document records in split {split!r}")
    return out


class TokenTaskSource:
    """The batch source of the token peer.

    Args:
        cfg: Data config.
        tokenize: Texts -> token ids (the codec tokenizer's ``encode``).
        batch_size, seed, process_index, process_count: As every batch source.
    """

    def __init__(
        self,
        cfg: TokenTaskDataConfig,
        *,
        tokenize: Callable[[Sequence[str]], list[list[int]]],
        batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if batch_size % process_count:
            raise ValueError(f"batch_size {batch_size} is not divisible by {process_count}")
        texts = task_texts(cfg.pairs, cfg.split, cfg.plain)
        contexts = tokenize([c for c, _ in texts if c])
        targets = tokenize([t for _, t in texts])
        it = iter(contexts)
        seqs, masks = [], []
        t = cfg.max_len
        for (context, _), target in zip(texts, targets):
            read, wanted = (next(it) if context else []), [*target, EOS_ID]
            keep = min(len(read), max(t - len(wanted), t // 2))
            ids = (read[len(read) - keep :] + wanted)[:t]
            seqs.append(np.asarray(ids, np.int32))
            masks.append(np.arange(len(ids)) >= keep)
        order = np.random.default_rng([seed, 0xC1]).permutation(len(seqs))
        lengths = np.array([len(seqs[i]) for i in order])
        rows = [[int(order[i]) for i in row] for row in pack_rows(lengths, cfg.max_len)]
        self.tokens = np.zeros((len(rows), t), np.int32)
        self.segment_ids = np.zeros((len(rows), t), np.int32)
        self.positions = np.zeros((len(rows), t), np.int32)
        self.loss_mask = np.zeros((len(rows), t), bool)
        for r, members in enumerate(rows):
            col = 0
            for seg, i in enumerate(members, start=1):
                n = len(seqs[i])
                self.tokens[r, col : col + n] = seqs[i]
                self.segment_ids[r, col : col + n] = seg
                self.positions[r, col : col + n] = np.arange(n)
                self.loss_mask[r, col : col + n] = masks[i]
                col += n
        self.num_sequences = len(seqs)
        local = batch_size // process_count
        self.order = RowOrder(len(rows), batch_size, seed, process_index * local, local)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of the global batch at ``step``."""
        rows = self.order.rows(step)
        return {
            "tokens": self.tokens[rows],
            "segment_ids": self.segment_ids[rows],
            "positions": self.positions[rows],
            "loss_mask": self.loss_mask[rows],
        }

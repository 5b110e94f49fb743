"""Token targets for a likelihood objective: the next concept's sentence, as codec token ids.

The likelihood LCM (:mod:`lcm.models.likelihood_lcm`) scores each predicted concept by the
codec decoder's log-likelihood of the sentence that really comes next. Its batches are the
concept batches of :class:`~lcm.data.concepts.ConceptSource` plus, per row, up to
``targets_per_row`` of the positions that have a next concept and that concept's token ids:

- ``target_positions [B, K]`` int32: the position ``t`` whose prediction is scored (0 where a
  slot is unused);
- ``target_tokens [B, K, L]`` int32: the ids of the sentence at ``t + 1`` (ids, ``EOS``,
  ``PAD``; all ``PAD`` where a slot is unused). The end-of-text concept's sentence is
  ``eot_text`` ("End of text."), the sentence whose encoding it is.

A row with more scored positions than ``K`` keeps a random ``K`` of them, drawn from
(seed, step, row), so the order stays a pure function of (seed, step). ``L`` is the smallest
of :data:`TOKEN_BUCKETS` that holds the longest target of the global batch, at most
``target_tokens`` (longer sentences are cut), so every process pads alike and short batches
compile to short shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from encoders.tokenizer import PAD_ID  # SONAR's padding id is the same
from lcm.data.concepts import ConceptDataConfig, ConceptSource, in_split, load_concepts
from lcm.data.shards import read_shards
from lcm.text.readers import DataError

TOKEN_BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256)


@dataclasses.dataclass(frozen=True)
class SentenceTargetDataConfig(ConceptDataConfig):
    """Data section of the likelihood LCM: the concept data plus its token targets.

    Attributes:
        target_tokens: Most token ids per target sentence, EOS included (longer ones are cut).
        targets_per_row: Most scored positions per row (K); more are subsampled.
        eot_text: The sentence the end-of-text concept encodes.
    """

    target_tokens: int = 48
    targets_per_row: int = 32
    eot_text: str = "End of text."

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target_tokens < 2:
            raise ValueError(f"target_tokens must be >= 2, got {self.target_tokens}")
        if self.targets_per_row < 1:
            raise ValueError(f"targets_per_row must be >= 1, got {self.targets_per_row}")
        if self.source != "shards":
            raise ValueError(
                "token targets need the sentences: data.source must be 'shards' (embedded by "
                "`lcm data embed`), not 'synthetic'"
            )
        if self.eot == "none":
            raise ValueError("token targets need the end-of-text concept: data.eot is 'none'")


Tokenize = Callable[[Sequence[str]], list[list[int]]]


@dataclasses.dataclass(frozen=True, eq=False)
class TokenTable:
    """The token ids of every concept of a :class:`~lcm.data.concepts.ConceptSet`.

    Attributes:
        ids: [N, target_tokens] int32, row ``i`` for ``ConceptSet.vectors[i]``, PAD-filled.
        lengths: [N] int32, ids per row (EOS included).
    """

    ids: np.ndarray
    lengths: np.ndarray


def load_token_table(cfg: SentenceTargetDataConfig, tokenize: Tokenize) -> TokenTable:
    """Tokenize the sentences of ``cfg.split`` in the order of :func:`load_concepts`.

    Raises:
        DataError: The shards' documents or sentence counts disagree with the concepts.
    """
    concepts = load_concepts(cfg)
    n, cap = len(concepts.vectors), cfg.target_tokens
    ids = np.full((n, cap), PAD_ID, np.int32)
    lengths = np.zeros(n, np.int32)
    eot = tokenize([cfg.eot_text])[0][:cap]
    doc = 0
    for row in read_shards(cfg.shards, columns=["doc_id", "sentences"]):
        if not in_split(row["doc_id"], cfg.split, cfg.valid_fraction):
            continue
        start, end = concepts.offsets[doc], concepts.offsets[doc + 1]
        if concepts.doc_ids[doc] != row["doc_id"] or end - start != len(row["sentences"]) + 1:
            raise DataError(
                f"{cfg.shards}: document {row['doc_id']!r} has {len(row['sentences'])} "
                f"sentences but its embeddings disagree; re-run `lcm data embed`",
                path=str(cfg.shards),
            )
        for i, tokens in enumerate([*tokenize(row["sentences"]), eot]):
            tokens = tokens[:cap]
            ids[start + i, : len(tokens)] = tokens
            lengths[start + i] = len(tokens)
        doc += 1
    if doc != concepts.num_docs:
        raise DataError(f"{cfg.shards}: {doc} documents read, {concepts.num_docs} embedded")
    return TokenTable(ids, lengths)


def bucket(length: int, cap: int) -> int:
    """The padded target length of a batch whose longest target has ``length`` ids."""
    return min(next((b for b in TOKEN_BUCKETS if b >= length), cap), cap)


class SentenceTargetSource(ConceptSource):
    """Concept batches with token targets (see the module docstring).

    Args:
        cfg: Data config.
        tokenize: Sentences -> the codec decoder's target ids (``Codec.target_ids``).
        batch_size, seed, process_index, process_count: As :class:`ConceptSource`.
    """

    def __init__(
        self,
        cfg: SentenceTargetDataConfig,
        *,
        tokenize: Tokenize,
        batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        super().__init__(
            cfg,
            batch_size=batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
        )
        self.tokens = load_token_table(cfg, tokenize)
        self.k = cfg.targets_per_row
        self.cap = cfg.target_tokens

    def _picks(self, step: int, rows: np.ndarray, first_row: int) -> np.ndarray:
        """[len(rows), K] scored positions (-1: unused) of ``rows``, the batch rows from
        ``first_row`` on."""
        index = self.table.index[rows]
        seg = self.table.segment_ids[rows]
        nxt = np.maximum(index[:, 1:], 0)
        scored = (
            (seg[:, :-1] > 0)
            & (seg[:, 1:] == seg[:, :-1])
            & (index[:, 1:] >= 0)
            & self.concepts.targets[nxt]
        )
        picks = np.full((len(rows), self.k), -1, np.int64)
        for r, where in enumerate(scored):
            positions = np.flatnonzero(where)
            if len(positions) > self.k:
                rng = np.random.default_rng([self.seed, 0x7A, step, first_row + r])
                positions = np.sort(rng.choice(positions, self.k, replace=False))
            picks[r, : len(positions)] = positions
        return picks

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows at ``step``, with ``target_positions`` and ``target_tokens``."""
        out = super().batch(step)
        # The padded length must agree across processes: it comes from the global batch.
        every = self.rows(step, global_batch=True)
        picks_all = self._picks(step, every, 0)
        concept_of = np.take_along_axis(
            self.table.index[every], np.maximum(picks_all, 0) + 1, axis=1
        )
        lengths = np.where(picks_all >= 0, self.tokens.lengths[np.maximum(concept_of, 0)], 0)
        width = bucket(max(int(lengths.max()), 1), self.cap)
        mine = slice(self.first_row, self.first_row + self.local_batch_size)
        picks, concept = picks_all[mine], concept_of[mine]
        tokens = self.tokens.ids[np.maximum(concept, 0), :width]
        tokens[picks < 0] = PAD_ID
        out["target_positions"] = np.maximum(picks, 0).astype(np.int32)
        out["target_tokens"] = tokens
        return out

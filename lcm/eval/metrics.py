"""Pre-training metrics of the LCM paper (section 2.5), on raw (denormalized) concept vectors.

- **l2**: Euclidean distance between the predicted and the true next concept.
- **l2-r** (round trip): the prediction is decoded to text and re-encoded by the codec first,
  so only what survives as a sentence counts.
- **CA** (contrastive accuracy): for a prediction, the fraction of the *other* true concepts
  of the batch that are farther from it than its own true concept (0.5 = chance, 1 = every
  other concept is farther).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Codec(Protocol):
    """The codec calls the round-trip metric needs (``encoders.Codec`` has them)."""

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        """``N`` sentences -> ``[N, D]`` float32."""
        ...

    def decode(self, vectors: np.ndarray) -> list[str]:
        """``[N, D]`` vectors -> ``N`` sentences."""
        ...


def l2_distances(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``||pred_i - target_i||`` for ``[N, D]`` arrays: [N]."""
    return np.linalg.norm(np.asarray(pred, np.float64) - target, axis=-1)


def contrastive_accuracy(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per prediction, the fraction of other targets farther than its own: [N] (N >= 2)."""
    pred = np.asarray(pred, np.float64)
    target = np.asarray(target, np.float64)
    n = pred.shape[0]
    if n < 2:
        raise ValueError("contrastive accuracy needs at least 2 predictions")
    sq = (pred**2).sum(-1)[:, None] - 2 * pred @ target.T + (target**2).sum(-1)[None]
    own = np.diag(sq)[:, None]
    farther = (sq > own) & ~np.eye(n, dtype=bool)
    return farther.sum(axis=1) / (n - 1)


def round_trip(pred: np.ndarray, codec: Codec) -> np.ndarray:
    """Decode predictions ``[N, D]`` to sentences and encode them again: [N, D]."""
    decoded = codec.decode(np.asarray(pred, np.float32))
    # An empty decoding has no vector; "." stands in for it (a near-empty sentence).
    sentences = [s if s.strip() else "." for s in decoded]
    return np.asarray(codec.encode(sentences), np.float32)

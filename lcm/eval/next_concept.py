"""Evaluate next-concept prediction on held-out documents, teacher-forced.

Every position ``t`` of every evaluated document gets a prediction of concept ``t + 1`` from
the true concepts ``<= t`` (:meth:`NextConceptModel.predict_next`, one parallel pass per batch
of rows); predictions and targets are denormalized before the metrics of
:mod:`lcm.eval.metrics` are taken. CA is computed within each batch of rows.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from lcm.data.concepts import ConceptSet, RowTable, gather_rows
from lcm.data.normalizer import Normalizer
from lcm.eval.metrics import Codec, contrastive_accuracy, l2_distances, round_trip
from lcm.models.base_lcm import next_concept_targets
from lcm.models.protocols import NextConceptModel, SamplingOptions


@dataclasses.dataclass(frozen=True)
class NextConceptScores:
    """Mean metrics over all predicted positions.

    Attributes:
        l2: Mean distance of the prediction to the true next concept.
        l2_round_trip: Same after decoding and re-encoding the prediction (None: no codec).
        contrastive_accuracy: Mean CA (0.5 = chance).
        l2_copy: Reference: mean distance of the *current* concept to the next one.
        count: Number of predicted positions.
    """

    l2: float
    l2_round_trip: float | None
    contrastive_accuracy: float
    l2_copy: float
    count: int


def evaluate_next_concept(
    model: NextConceptModel,
    concepts: ConceptSet,
    table: RowTable,
    normalizer: Normalizer,
    *,
    options: SamplingOptions | None = None,
    batch_rows: int = 16,
    rng: jax.Array | None = None,
    codec: Codec | None = None,
) -> NextConceptScores:
    """Score ``model`` on every row of ``table``.

    Args:
        model: The model (an ``nnx.Module``).
        concepts: The normalized documents the rows index.
        table: The rows to evaluate.
        normalizer: Maps predictions and targets back to the codec space.
        options: Sampling options of the model.
        batch_rows: Rows per forward pass (and per CA batch).
        rng: Sampling key (default ``key(0)``).
        codec: For the round-trip metric l2-r; None skips it.

    Returns:
        The scores.
    """
    options = options or SamplingOptions()
    rng = jax.random.key(0) if rng is None else rng
    graphdef, weights = nnx.split(model)

    @jax.jit
    def predict(weights: nnx.State, batch: dict[str, jax.Array], rng: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, weights).predict_next(batch, rng, options)

    l2, l2r, ca, copy = [], [], [], []
    for start in range(0, table.num_rows, batch_rows):
        rows = np.arange(start, min(start + batch_rows, table.num_rows))
        # A short last batch repeats row 0 with an empty mask, so every pass compiles once.
        padded = np.concatenate([rows, np.zeros(batch_rows - len(rows), np.int64)])
        batch = gather_rows(concepts, table, padded)
        batch["segment_ids"][len(rows) :] = 0
        batch["mask"][len(rows) :] = False
        pred = np.asarray(predict(weights, batch, jax.random.fold_in(rng, start)))
        targets, valid = (np.asarray(a) for a in next_concept_targets(batch))
        if valid.sum() < 2:
            continue
        p = normalizer.denormalize(pred[valid])
        y = normalizer.denormalize(targets[valid])
        l2.append(l2_distances(p, y))
        ca.append(contrastive_accuracy(p, y))
        copy.append(l2_distances(normalizer.denormalize(batch["concepts"][valid]), y))
        if codec is not None:
            l2r.append(l2_distances(round_trip(p, codec), y))
    if not l2:
        raise ValueError("no position to evaluate (documents need at least 2 concepts)")
    return NextConceptScores(
        l2=float(np.concatenate(l2).mean()),
        l2_round_trip=float(np.concatenate(l2r).mean()) if l2r else None,
        contrastive_accuracy=float(np.concatenate(ca).mean()),
        l2_copy=float(np.concatenate(copy).mean()),
        count=int(sum(len(x) for x in l2)),
    )

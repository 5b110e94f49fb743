"""Pre-training metrics (l2, l2-r, CA) and the evaluation loop, on synthetic concepts."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from lcm.data.concepts import (
    ConceptDataConfig,
    SyntheticConfig,
    build_rows,
    concept_normalizer,
    load_concepts,
)
from lcm.eval.metrics import contrastive_accuracy, l2_distances, round_trip
from lcm.eval.next_concept import evaluate_next_concept
from lcm.models.base_lcm import next_concept_targets
from lcm.models.protocols import Batch, SamplingOptions

DATA = ConceptDataConfig(max_seq_len=12, synthetic=SyntheticConfig(dim=6, num_docs=30))


def test_l2_and_contrastive_accuracy_closed_form() -> None:
    target = np.eye(4, dtype=np.float32) * 2.0
    np.testing.assert_allclose(l2_distances(target + [0, 0, 0, 1], target), 1.0)
    np.testing.assert_allclose(contrastive_accuracy(target, target), 1.0)
    # Predicting the *next* row's target: no other target is farther than the own one.
    np.testing.assert_allclose(contrastive_accuracy(np.roll(target, -1, axis=0), target), 0.0)
    # On a line: targets 0, 1, 3, 7, each predicted 0.6 too high; only 0.6 sees a closer one.
    line = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(contrastive_accuracy(line + 0.6, line), [2 / 3, 1, 1, 1])
    rng = np.random.default_rng(0)
    chance = contrastive_accuracy(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)))
    assert chance.mean() == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError):
        contrastive_accuracy(target[:1], target[:1])


class RoundingCodec:
    """A stand-in codec whose round trip rounds every coordinate."""

    def decode(self, vectors: np.ndarray) -> list[str]:
        return [" ".join(str(round(float(v))) for v in row) for row in vectors]

    def encode(self, sentences: list[str]) -> np.ndarray:
        return np.array([[float(v) for v in s.split()] for s in sentences], np.float32)


def test_round_trip_goes_through_text() -> None:
    pred = np.array([[0.4, 1.6], [-2.2, 0.1]], np.float32)
    np.testing.assert_allclose(round_trip(pred, RoundingCodec()), [[0, 2], [-2, 0]])


class Oracle(nnx.Module):
    """Predicts the true next concept (``noise`` adds a fixed offset)."""

    def __init__(self, noise: float):
        self.noise = noise

    def predict_next(self, batch: Batch, rng: jax.Array, options: SamplingOptions) -> jax.Array:
        return next_concept_targets(batch)[0] + self.noise


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_evaluation_of_an_oracle(noise: float) -> None:
    concepts = load_concepts(DATA)
    table = build_rows(concepts, 12, pack=True, seed=0)
    norm = concept_normalizer(DATA)
    scores = evaluate_next_concept(
        Oracle(noise), concepts, table, norm, batch_rows=5, codec=RoundingCodec()
    )
    pairs = sum(len(concepts.doc(i)) - 1 for i in range(concepts.num_docs))
    wrapped = sum((len(concepts.doc(i)) - 1) // 12 for i in range(concepts.num_docs))
    assert scores.count == pairs - wrapped  # no target across a wrap or a document boundary
    want = np.linalg.norm(noise * norm.scale)  # an offset of `noise` normalized units
    assert scores.l2 == pytest.approx(want, abs=1e-4)
    # Not exactly 1 for the oracle: end-of-text targets tie with each other.
    assert scores.contrastive_accuracy > (0.99 if noise == 0 else 0.9)
    # Rounding moves each of the D = 6 coordinates by at most 0.5.
    assert scores.l2_round_trip is not None and scores.l2_round_trip <= want + 0.5 * np.sqrt(6)
    assert scores.l2_copy > scores.l2

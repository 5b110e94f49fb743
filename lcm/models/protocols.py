"""What every next-concept model offers to training, evaluation and generation.

All vectors a model sees or returns are *normalized* concepts (see
:class:`lcm.data.normalizer.Normalizer`); callers normalize prompts and denormalize outputs.

A training batch (from :mod:`lcm.data.concepts`) is a dict of ``concepts [B, T, D]`` float32,
``segment_ids [B, T]`` int32 (document piece, 0 = padding), ``positions [B, T]`` int32
(position in the piece), ``mask [B, T]`` bool (``segment_ids > 0``) and, for fine-tuning
rows, ``loss_mask [B, T]`` bool (the concepts a loss predicts: False on task inputs).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Protocol

import jax

from lcm.models.diffusion.ddim import DDIMConfig

Batch = dict[str, jax.Array]
State = Any  # a pytree of arrays: caches, encoded context, current length


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """How a model turns its output into a concept (each family reads its own fields).

    Attributes:
        ddim: Sampler options of the diffusion models.
        temperature: Softmax temperature of the Quant-LCM unit choice; 0 = greedy (argmax).
    """

    ddim: DDIMConfig = dataclasses.field(default_factory=DDIMConfig)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


class NextConceptModel(Protocol):
    """A trainable model that predicts the next concept of a document.

    Attributes:
        concept_dim: D, the size of a concept vector.
    """

    concept_dim: int

    def loss(self, batch: Batch, rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Scalar training loss and scalar metrics (``"tokens"``: concepts predicted)."""
        ...

    def predict_next(self, batch: Batch, rng: jax.Array, options: SamplingOptions) -> jax.Array:
        """Teacher-forced prediction of concept ``t + 1`` at every position ``t``: [B, T, D].

        Output ``t`` depends only on concepts ``<= t`` of its own document piece, and its
        randomness on ``(rng, row, positions[t] + 1)``, exactly as in :meth:`next_concept`.
        """
        ...

    def start(self, prompt: jax.Array, max_len: int, first: jax.Array | None = None) -> State:
        """Encode a prompt ``[B, P, D]`` (P >= 1) into a state with room for ``max_len``.

        Rows of different lengths come left-padded: row ``b`` starts at slot ``first[b]``
        ([B] int32; None = no padding) and generates exactly what it would alone, its
        randomness keyed by positions counted from its own first concept.
        """
        ...

    def next_concept(self, state: State, rng: jax.Array, options: SamplingOptions) -> jax.Array:
        """The next concept ``[B, D]`` after the context held by ``state``."""
        ...

    def extend(self, state: State, concept: jax.Array) -> State:
        """Append ``concept [B, D]`` to the context (one KV-cache step)."""
        ...


# Most sentences written per call, by job: the one default of the library, the command line
# and the demo.
SUMMARIZE_SENTENCES, EXPAND_SENTENCES, GENERATE_SENTENCES = 4, 12, 8
MAX_SENTENCES = {
    "summarize": SUMMARIZE_SENTENCES,
    "expand": EXPAND_SENTENCES,
    "generate": GENERATE_SENTENCES,
}


def check_max_sentences(value: object) -> int:
    """``value`` as the number of sentences to generate: a whole number >= 1.

    Raises:
        ValueError: For a float, a str, a bool, or a number < 1 (naming the value).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"max_sentences must be a whole number >= 1, got {value!r}")
    return int(value)

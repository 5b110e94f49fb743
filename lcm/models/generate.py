"""Simple generation for any :class:`~lcm.models.protocols.NextConceptModel`.

Encode the prompt once (KV caches), then repeat: produce the next concept, append it to the
context. Greedy or sampled depending on the model and :class:`SamplingOptions` (Base-LCM is
deterministic; the diffusion models sample with DDIM; Quant-LCM samples units). A document
ends at the first concept whose cosine similarity to a stop vector (the end-of-text concept)
reaches a threshold. Vectors are normalized concepts throughout.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcm.models.protocols import NextConceptModel, SamplingOptions, State


@dataclasses.dataclass(frozen=True)
class Generated:
    """Generated continuations.

    Attributes:
        concepts: [B, N, D] the generated concepts (normalized).
        lengths: [B] concepts up to and including the first stop concept (N if none).
    """

    concepts: np.ndarray
    lengths: np.ndarray


@functools.lru_cache(maxsize=16)
def compiled_steps(
    graphdef: nnx.GraphDef, options: SamplingOptions, max_len: int
) -> tuple[Callable[..., State], Callable[..., tuple[jax.Array, State]]]:
    """Jitted ``start`` and ``step`` (cached, so repeated generations compile once)."""

    @jax.jit
    def start(weights: nnx.State, prompt: jax.Array, first: jax.Array | None) -> State:
        return nnx.merge(graphdef, weights).start(prompt, max_len, first)

    # The state (KV caches) is donated: each step updates it in place instead of copying it.
    @functools.partial(jax.jit, donate_argnums=1)
    def step(weights: nnx.State, state: State, rng: jax.Array) -> tuple[jax.Array, State]:
        m = nnx.merge(graphdef, weights)
        concept = m.next_concept(state, rng, options)
        return concept, m.extend(state, concept)

    return start, step


@functools.lru_cache(maxsize=16)
def compiled_feedback_steps(
    graphdef: nnx.GraphDef, options: SamplingOptions
) -> tuple[Callable[..., jax.Array], Callable[..., State]]:
    """Jitted ``predict`` and ``extend``: a step split in two, so that the host can replace
    the predicted concept before it enters the context (e.g. by re-encoding its decoded
    sentence). The state of ``extend`` is donated, as in :func:`compiled_steps`."""

    @jax.jit
    def predict(weights: nnx.State, state: State, rng: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, weights).next_concept(state, rng, options)

    @functools.partial(jax.jit, donate_argnums=1)
    def extend(weights: nnx.State, state: State, concept: jax.Array) -> State:
        return nnx.merge(graphdef, weights).extend(state, concept)

    return predict, extend


def generate(
    model: NextConceptModel,
    prompt: jax.Array,
    num_concepts: int,
    rng: jax.Array,
    options: SamplingOptions | None = None,
    stop: jax.Array | None = None,
    stop_threshold: float = 0.9,
    first: jax.Array | None = None,
) -> Generated:
    """Continue ``prompt`` [B, P, D] (P >= 1) by ``num_concepts`` concepts.

    This is the fixed-length core; :func:`lcm.generate.generate_continuations` adds ragged
    prompts, stop criteria and early exit on top of it.

    Args:
        model: A next-concept model (an ``nnx.Module``).
        prompt: Normalized prompt concepts.
        num_concepts: Concepts to generate (all rows generate the same number; ``lengths``
            tells where each one stopped).
        rng: PRNG key; the randomness of each concept depends only on (rng, row, position).
        options: Sampling options (default :class:`SamplingOptions`).
        stop: Normalized stop concept [D] (e.g. end of text), or None.
        stop_threshold: Cosine similarity to ``stop`` that ends a document.
        first: [B] int32 first real slot of each left-padded prompt row (None: no padding).

    Returns:
        The continuations and their lengths.
    """
    options = options or SamplingOptions()
    graphdef, weights = nnx.split(model)
    start, step = compiled_steps(graphdef, options, prompt.shape[1] + num_concepts)
    state = start(weights, prompt, first)
    out = []
    for _ in range(num_concepts):
        concept, state = step(weights, state, rng)
        out.append(concept)
    concepts = np.asarray(jnp.stack(out, axis=1))
    lengths = np.full(concepts.shape[0], num_concepts)
    if stop is not None:
        stop_vec = np.asarray(stop, np.float32)
        cos = (
            concepts
            @ stop_vec
            / (np.linalg.norm(concepts, axis=-1) * np.linalg.norm(stop_vec) + 1e-12)
        )
        hit = cos >= stop_threshold
        lengths = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, num_concepts)
    return Generated(concepts, lengths)

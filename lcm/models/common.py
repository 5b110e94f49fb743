"""Helpers shared by the concept models: attention masks of packed rows, per-position keys.

Batch layout (see :mod:`lcm.data.concepts`): ``segment_ids [B, T]`` numbers the document
pieces of a packed row from 1 (0 = padding) and ``positions [B, T]`` counts concepts from 0
within each piece. A concept may only see concepts of its own piece.

Randomness used to *generate* a concept is keyed by (row, position of the generated concept),
so predicting every position of a document in one parallel pass and generating it one
concept at a time with a KV cache draw exactly the same numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def causal_segment_mask(segment_ids: jax.Array) -> jax.Array:
    """Causal self-attention within each piece: ``[B, T] -> [B, T, T]`` bool.

    Padding (segment 0) attends causally to padding, so no row is empty.
    """
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    t = segment_ids.shape[1]
    return same & jnp.tril(jnp.ones((t, t), bool))[None]


def earlier_in_segment(
    query_segments: jax.Array,
    query_positions: jax.Array,
    key_segments: jax.Array,
    key_positions: jax.Array,
) -> jax.Array:
    """Keys of the query's piece at strictly earlier positions: ``[B, Tq, Tk]`` bool.

    Args:
        query_segments: [B, Tq].
        query_positions: [B, Tq] position of the concept each query predicts.
        key_segments: [B, Tk].
        key_positions: [B, Tk].
    """
    same = query_segments[:, :, None] == key_segments[:, None, :]
    earlier = key_positions[:, None, :] < query_positions[:, :, None]
    return same & earlier & (key_segments[:, None, :] > 0)


def position_keys(rng: jax.Array, positions: jax.Array) -> jax.Array:
    """One PRNG key per (row, position): ``fold_in(fold_in(rng, row), position)``.

    Args:
        rng: A PRNG key, or a [B] array of typed keys, one per row, used as the row keys
            as they are (the generator passes these, so that a document draws the same
            numbers in any batch).
        positions: Integer positions [B] or [B, T] of the concepts to generate.

    Returns:
        Keys with the shape of ``positions``.
    """
    if rng.ndim == 1 and jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
        per_row = rng
    else:
        rows = jnp.arange(positions.shape[0])
        per_row = jax.vmap(lambda r: jax.random.fold_in(rng, r))(rows)
    if positions.ndim == 1:
        return jax.vmap(jax.random.fold_in)(per_row, positions)
    return jax.vmap(jax.vmap(jax.random.fold_in, in_axes=(None, 0)))(per_row, positions)


def normal_from_keys(keys: jax.Array, dim: int, salt: int | jax.Array) -> jax.Array:
    """Standard normal vectors ``[*keys.shape, dim]``, one per key folded with ``salt``."""
    flat = keys.reshape(-1)
    draw = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, salt), (dim,)))(flat)
    return draw.reshape(*keys.shape, dim)


def target_mask(batch: dict[str, jax.Array]) -> jax.Array:
    """[B, T] bool: the concepts a loss predicts (real ones that are ``loss_mask`` targets).

    Fine-tuning rows carry ``loss_mask`` (False on the input and task-marker concepts);
    pre-training rows may leave it out.
    """
    if "loss_mask" in batch:
        return batch["mask"] & batch["loss_mask"]
    return batch["mask"]


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values`` [...] over entries where ``mask`` [...] is True (0 if none)."""
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def regression_loss(err: jax.Array, valid: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Loss and metrics of a vector regression from its errors.

    Args:
        err: Prediction minus target [..., D].
        valid: [...] bool, the positions that count.

    Returns:
        The MSE (mean over D and valid positions), and metrics: ``mse``, ``l2`` (mean
        Euclidean norm of the error) and ``tokens`` (number of valid positions).
    """
    mse = masked_mean(jnp.mean(err**2, axis=-1), valid)
    return mse, {
        "mse": mse,
        "l2": masked_mean(jnp.sqrt(jnp.sum(err**2, axis=-1)), valid),
        "tokens": jnp.sum(valid).astype(jnp.float32),
    }


def drop_mask(rng: jax.Array, shape: tuple[int, ...], prob: float) -> jax.Array:
    """Bernoulli(``prob``) bool mask: which positions lose their context (CFG training)."""
    if prob == 0.0:
        return jnp.zeros(shape, bool)
    return jax.random.bernoulli(rng, prob, shape)

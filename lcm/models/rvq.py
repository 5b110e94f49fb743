"""Residual vector quantization of concept vectors (paper section 2.4), fitted with k-means.

``K`` codebooks of ``V`` units each: codebook ``k`` quantizes what the first ``k`` left over,
so a vector is coded as ``K`` unit indices and reconstructed as the sum of their units.
Each level is fitted by Lloyd's k-means on the residuals of a sample, in JAX.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def sq_distances(x: jax.Array, centers: jax.Array) -> jax.Array:
    """Squared distances ``[..., D] x [V, D] -> [..., V]``."""
    cross = jnp.einsum("...d,vd->...v", x, centers)
    return jnp.sum(x**2, -1, keepdims=True) - 2 * cross + jnp.sum(centers**2, -1)


def nearest(x: jax.Array, centers: jax.Array) -> jax.Array:
    """Index of the nearest center for each vector: ``[..., D] -> [...]`` int32."""
    return jnp.argmin(sq_distances(x, centers), axis=-1).astype(jnp.int32)


def kmeans_plus_plus(x: jax.Array, k: int, key: jax.Array) -> jax.Array:
    """k-means++ seeding: each new center is a point drawn with probability ~ squared
    distance to the nearest center so far. ``[N, D] -> [k, D]``."""
    keys = jax.random.split(key, k)
    first = x[jax.random.randint(keys[0], (), 0, x.shape[0])]
    centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, axis=-1)

    def add(i: int, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        centers, d2 = carry
        # The tiny floor keeps the draw defined when every point is already a center.
        c = x[jax.random.categorical(keys[i], jnp.log(d2 + 1e-30))]
        return centers.at[i].set(c), jnp.minimum(d2, jnp.sum((x - c) ** 2, axis=-1))

    return jax.lax.fori_loop(1, k, add, (centers, d2))[0]


@jax.jit(static_argnames=("k", "iters"))
def kmeans(x: jax.Array, k: int, iters: int, key: jax.Array) -> jax.Array:
    """Lloyd's k-means from k-means++ seeds: ``[N, D]`` (N >= k) -> centers ``[k, D]``.

    A center that loses all its points keeps its previous position.
    """

    def step(_: int, centers: jax.Array) -> jax.Array:
        assign = nearest(x, centers)
        sums = jax.ops.segment_sum(x, assign, num_segments=k)
        counts = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), assign, num_segments=k)
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], centers)

    return jax.lax.fori_loop(0, iters, step, kmeans_plus_plus(x, k, key))


def fit_rvq(
    vectors: np.ndarray,
    num_codebooks: int,
    codebook_size: int,
    *,
    iters: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """Fit residual codebooks on a sample.

    Args:
        vectors: [N, D] sample (N >= codebook_size).
        num_codebooks: K.
        codebook_size: V.
        iters: Lloyd iterations per level.
        seed: Seed of the center initialization.

    Returns:
        Codebooks [K, V, D] float32.
    """
    x = jnp.asarray(vectors, jnp.float32)
    if x.ndim != 2 or x.shape[0] < codebook_size:
        raise ValueError(f"need a sample [N >= {codebook_size}, D], got {x.shape}")
    books = []
    for level in range(num_codebooks):
        centers = kmeans(x, codebook_size, iters, jax.random.fold_in(jax.random.key(seed), level))
        x = x - centers[nearest(x, centers)]
        books.append(centers)
    return np.asarray(jnp.stack(books), np.float32)


def rvq_encode(x: jax.Array, codebooks: jax.Array) -> jax.Array:
    """Greedy residual codes: ``[..., D] -> [..., K]`` int32."""

    def level(residual: jax.Array, centers: jax.Array) -> tuple[jax.Array, jax.Array]:
        code = nearest(residual, centers)
        return residual - centers[code], code

    _, codes = jax.lax.scan(level, x, codebooks)
    return jnp.moveaxis(codes, 0, -1)


def rvq_units(codes: jax.Array, codebooks: jax.Array) -> jax.Array:
    """The chosen unit of every codebook: ``[..., K] -> [..., K, D]``."""
    return jax.vmap(lambda c, book: book[c], in_axes=(-1, 0), out_axes=-2)(codes, codebooks)


def rvq_decode(codes: jax.Array, codebooks: jax.Array) -> jax.Array:
    """Reconstruction, the sum of the chosen units: ``[..., K] -> [..., D]``."""
    return jnp.sum(rvq_units(codes, codebooks), axis=-2)


def rvq_partial_sums(codes: jax.Array, codebooks: jax.Array) -> jax.Array:
    """Reconstruction from the codebooks before each level: ``[..., K] -> [..., K, D]``.

    Entry ``k`` is the sum of the units of codebooks ``0 .. k-1`` (zero for ``k = 0``): what
    the quantizer has already explained when it chooses unit ``k``.
    """
    units = rvq_units(codes, codebooks)
    return jnp.cumsum(units, axis=-2) - units


def reconstruction_errors(x: jax.Array, codebooks: jax.Array) -> np.ndarray:
    """Mean squared error (mean over D) of ``x`` [N, D] using the first 1..K codebooks: [K]."""
    units = rvq_units(rvq_encode(x, codebooks), codebooks)
    recon = jnp.cumsum(units, axis=-2)  # [N, K, D]
    return np.asarray(jnp.mean((x[:, None, :] - recon) ** 2, axis=(0, 2)))

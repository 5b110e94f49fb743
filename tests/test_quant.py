"""Residual vector quantization (k-means in JAX) and the Quant-LCM unit predictor."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from lcm_helpers import random_model

from lcm.data.concepts import ConceptDataConfig, SyntheticConfig, load_concepts
from lcm.models.config import TransformerConfig
from lcm.models.protocols import SamplingOptions
from lcm.models.quant import QuantConfig, QuantLCM
from lcm.models.rvq import (
    fit_rvq,
    kmeans,
    nearest,
    reconstruction_errors,
    rvq_decode,
    rvq_encode,
    rvq_partial_sums,
    rvq_units,
)


@pytest.fixture(scope="module")
def concepts() -> np.ndarray:
    data = ConceptDataConfig(synthetic=SyntheticConfig(dim=16, num_docs=200))
    return load_concepts(data).vectors


@pytest.fixture(scope="module")
def codebooks(concepts: np.ndarray) -> np.ndarray:
    return fit_rvq(concepts, 6, 32, iters=10)


def test_kmeans_finds_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    centers = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    x = np.concatenate([c + 0.1 * rng.normal(size=(50, 2)) for c in centers])
    found = np.asarray(kmeans(jnp.asarray(x, jnp.float32), 3, 10, jax.random.key(0)))
    order = [int(np.argmin(np.linalg.norm(found - c, axis=1))) for c in centers]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(found[order], centers, atol=0.05)


def test_reconstruction_error_falls_as_codebooks_are_added(
    concepts: np.ndarray, codebooks: np.ndarray
) -> None:
    errors = reconstruction_errors(jnp.asarray(concepts), jnp.asarray(codebooks))
    assert errors.shape == (6,)
    assert np.all(np.diff(errors) < 0), errors
    variance = float(np.mean((concepts - concepts.mean(0)) ** 2))
    assert errors[0] < 0.9 * variance and errors[-1] < 0.6 * errors[0], (variance, errors)


def test_codes_units_partial_sums_and_decode_agree(
    concepts: np.ndarray, codebooks: np.ndarray
) -> None:
    x, books = jnp.asarray(concepts[:20]), jnp.asarray(codebooks)
    codes = rvq_encode(x, books)
    assert codes.shape == (20, 6) and codes.dtype == jnp.int32
    units = rvq_units(codes, books)
    partial = rvq_partial_sums(codes, books)
    np.testing.assert_allclose(partial[:, 0], 0.0)
    np.testing.assert_allclose(partial[:, 1:], jnp.cumsum(units, axis=1)[:, :-1], atol=1e-5)
    np.testing.assert_allclose(rvq_decode(codes, books), partial[:, -1] + units[:, -1], atol=1e-5)
    # Greedy residual coding: each unit is the nearest one to what is left.
    for k in range(6):
        np.testing.assert_array_equal(codes[:, k], nearest(x - partial[:, k], books[k]))


def _model(variant: str, codebooks: np.ndarray) -> QuantLCM:
    k, v, _ = codebooks.shape
    tc = TransformerConfig(num_layers=1, num_heads=2, mlp_dim=32)
    cfg = QuantConfig(variant=variant, d_model=16, decoder=tc, num_codebooks=k, codebook_size=v)
    return random_model(lambda: QuantLCM(cfg, codebooks, nnx.Rngs(0)), codebooks)


def test_codebooks_are_buffers_not_parameters(codebooks: np.ndarray) -> None:
    model = _model("d", codebooks)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    assert "codebooks" not in params and "codebooks" in rest
    np.testing.assert_array_equal(rest["codebooks"].get_value(), codebooks)
    with pytest.raises(ValueError, match="do not match"):
        QuantLCM(QuantConfig(num_codebooks=2, codebook_size=32), codebooks, nnx.Rngs(0))


@pytest.mark.parametrize("variant", ["d", "c"])
def test_sampled_concepts_are_sums_of_one_unit_per_codebook(
    variant: str, concepts: np.ndarray
) -> None:
    books = fit_rvq(concepts, 2, 8, iters=5)
    model = _model(variant, books)
    batch = {
        "concepts": jax.random.normal(jax.random.key(0), (2, 5, 16)),
        "segment_ids": jnp.ones((2, 5), jnp.int32),
        "positions": jnp.broadcast_to(jnp.arange(5, dtype=jnp.int32), (2, 5)),
        "mask": jnp.ones((2, 5), bool),
    }

    @nnx.jit(static_argnums=2)
    def predict(model: QuantLCM, rng: jax.Array, temperature: float) -> jax.Array:
        return model.predict_next(batch, rng, SamplingOptions(temperature=temperature))

    sums = (books[0][:, None, :] + books[1][None, :, :]).reshape(-1, 16)  # all 64 choices
    temperature = 0.0 if variant == "d" else 2.0  # greedy for one, sampled for the other
    draws = [predict(model, jax.random.key(r), temperature) for r in (1, 2)]
    for out in draws:
        out = np.asarray(out).reshape(-1, 16)
        gap = np.min(np.linalg.norm(out[:, None] - sums[None], axis=-1), axis=1)
        np.testing.assert_allclose(gap, 0.0, atol=1e-5)
    # Greedy choices ignore the key; sampled ones follow it.
    assert np.array_equal(draws[0], draws[1]) == (temperature == 0.0)

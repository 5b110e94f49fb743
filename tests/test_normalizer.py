"""Concept normalizer: closed-form statistics, inversion, robustness, file round trip."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from lcm.data.normalizer import Normalizer


def sample(n: int = 4000, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.geomspace(0.01, 10.0, d)
    return (rng.normal(size=(n, d)) * scales + np.arange(d)).astype(np.float32)


@pytest.mark.parametrize("method", ["standard", "robust", "gaussian_robust"])
def test_round_trip_is_exact_without_clipping(method: str) -> None:
    x = sample()
    norm = Normalizer.fit(x, method=method)
    np.testing.assert_allclose(norm.denormalize(norm.normalize(x)), x, rtol=1e-5, atol=1e-5)
    # and the same map on jax arrays
    np.testing.assert_allclose(
        np.asarray(norm.normalize(jnp.asarray(x))), norm.normalize(x), rtol=1e-6, atol=1e-6
    )


def test_gaussian_robust_matches_std_on_gaussian_data_and_ignores_outliers() -> None:
    x = sample(n=20000)
    norm = Normalizer.fit(x, method="gaussian_robust")
    np.testing.assert_allclose(norm.scale, x.std(0), rtol=0.05)
    np.testing.assert_allclose(norm.center, x.mean(0), atol=0.05 * x.std(0).max())
    dirty = x.copy()
    dirty[:50] = 1e6  # 0.25% outliers
    robust = Normalizer.fit(dirty, method="gaussian_robust")
    standard = Normalizer.fit(dirty, method="standard")
    np.testing.assert_allclose(robust.scale, norm.scale, rtol=0.05)
    assert np.all(standard.scale > 100 * norm.scale)


def test_normalized_data_is_standardized_and_clipped() -> None:
    x = sample()
    y = Normalizer.fit(x, method="standard").normalize(x)
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(0), 1.0, rtol=1e-4)
    clipped = Normalizer.fit(x, method="standard", clip=1.5).normalize(x)
    assert clipped.max() == pytest.approx(1.5) and clipped.min() == pytest.approx(-1.5)


def test_save_load_and_bad_files(tmp_path: Path) -> None:
    norm = Normalizer.fit(sample(), clip=3.0)
    norm.save(tmp_path / "normalizer.npz")
    again = Normalizer.load(tmp_path / "normalizer.npz")
    np.testing.assert_array_equal(again.center, norm.center)
    assert (again.method, again.clip) == (norm.method, 3.0)
    with pytest.raises(FileNotFoundError, match="normalizer file not found"):
        Normalizer.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="damaged"):
        Normalizer.load(tmp_path / "bad.npz")


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="NaN or inf"):
        Normalizer.fit(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"shape \[N >= 2, D\]"):
        Normalizer.fit(np.ones(5))
    with pytest.raises(ValueError, match="unknown normalizer method"):
        Normalizer.fit(sample(), method="minmax")  # type: ignore[arg-type]
    norm = Normalizer.fit(sample())
    with pytest.raises(ValueError, match="last dimension 6"):
        norm.normalize(np.ones((2, 5)))
    constant = Normalizer.fit(np.ones((10, 3)))  # zero spread must not divide by zero
    assert np.all(np.isfinite(constant.normalize(np.ones((1, 3)))))

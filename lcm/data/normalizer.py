"""Per-dimension normalization of concept vectors (LCM paper, section 2.2.1).

SONAR-like embedding spaces have dimensions of very different scales; the LCM models are
trained on normalized targets and generation inverts the map. Three robust variants:

- ``standard``: mean / standard deviation;
- ``robust``: median / interquartile range;
- ``gaussian_robust``: median / (IQR / 1.349), which equals the standard deviation for
  Gaussian data while ignoring outliers (the paper's choice).

Optional clipping of normalized values to ``[-clip, clip]`` keeps rare outliers from
dominating an MSE loss.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

from lcm.io import atomic_write

Method = Literal["standard", "robust", "gaussian_robust"]
METHODS: tuple[str, ...] = ("standard", "robust", "gaussian_robust")
_IQR_TO_STD = 1.349  # IQR of a standard normal distribution


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """An affine per-dimension map ``x -> (x - center) / scale``, optionally clipped.

    Attributes:
        center: ``[D]`` float32.
        scale: ``[D]`` float32, strictly positive.
        method: How it was fitted.
        clip: Clip normalized values to ``[-clip, clip]`` (None: no clipping).
        codec: Fingerprint of the codec whose vectors it was fitted on (``lcm data
            fit-normalizer`` records the shards' one; None when unknown).
    """

    center: np.ndarray
    scale: np.ndarray
    method: str = "gaussian_robust"
    clip: float | None = None
    codec: str | None = None

    def __post_init__(self) -> None:
        if self.center.shape != self.scale.shape or self.center.ndim != 1:
            raise ValueError(
                f"center {self.center.shape} and scale {self.scale.shape} must be equal [D] shapes"
            )
        if not (np.all(np.isfinite(self.center)) and np.all(np.isfinite(self.scale))):
            raise ValueError("normalizer statistics contain NaN or inf")
        if np.any(self.scale <= 0):
            raise ValueError("normalizer scale must be strictly positive")

    @property
    def dim(self) -> int:
        """The concept dimension D."""
        return int(self.center.shape[0])

    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        method: Method = "gaussian_robust",
        clip: float | None = None,
        min_scale: float = 1e-6,
    ) -> Normalizer:
        """Fit on a sample of concept vectors ``[N, D]`` (N >= 2, all finite)."""
        x = np.asarray(vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"fit needs vectors of shape [N >= 2, D], got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("fit: the vectors contain NaN or inf")
        if method == "standard":
            center, scale = x.mean(0), x.std(0)
        elif method in ("robust", "gaussian_robust"):
            q25, center, q75 = np.percentile(x, [25, 50, 75], axis=0)
            scale = q75 - q25
            if method == "gaussian_robust":
                scale = scale / _IQR_TO_STD
        else:
            raise ValueError(f"unknown normalizer method {method!r}; choose from {METHODS}")
        scale = np.maximum(scale, min_scale)  # constant dimensions must not divide by zero
        return cls(center.astype(np.float32), scale.astype(np.float32), method, clip)

    def _check(self, x: np.ndarray) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected vectors with last dimension {self.dim}, got {x.shape}")

    def normalize(self, x):
        """``[..., D] -> [..., D]``; works on numpy and jax arrays."""
        self._check(x)
        y = (x - self.center) / self.scale
        if self.clip is not None:
            y = y.clip(-self.clip, self.clip)
        return y

    def denormalize(self, y):
        """Inverse of :meth:`normalize` (exact where no clipping happened)."""
        self._check(y)
        return y * self.scale + self.center

    def save(self, path: str | os.PathLike) -> None:
        """Write ``normalizer.npz`` atomically (temp name, then rename)."""
        with atomic_write(path, "wb") as f:
            np.savez(
                f,
                center=self.center,
                scale=self.scale,
                method=np.array(self.method),
                clip=np.array(np.nan if self.clip is None else self.clip),
                codec=np.array(self.codec or ""),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Normalizer:
        """Read a file written by :meth:`save`; a missing or damaged file is a clear error."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"normalizer file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                clip = float(z["clip"])
                codec = str(z["codec"]) if "codec" in z.files else ""  # older files lack it
                return cls(
                    center=z["center"].astype(np.float32),
                    scale=z["scale"].astype(np.float32),
                    method=str(z["method"]),
                    clip=None if np.isnan(clip) else clip,
                    codec=codec or None,
                )
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"normalizer file {path} is damaged or not a normalizer: {e}") from e

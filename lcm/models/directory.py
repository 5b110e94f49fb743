"""LCM model directories: what ``lcm export`` writes, what ships and what ``Pipeline`` opens.

Layout::

    config.yaml      LCMDirConfig: family, D, context length, model section, task markers
    weights.npz      every model variable, flat (lcm.nn.weights)
    normalizer.npz   the concept normalizer the model was trained with
    eot.npy          [D] the raw end-of-text concept of its training data
    card.md          model card: how it was trained, on what, and its measured metrics

The concept space is the codec's: a directory is only meaningful with the codec whose
vectors it was trained on (named by ``codec`` in the config).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from lcm.config import ConfigError, from_dict, read_yaml, save_yaml, to_dict
from lcm.data.normalizer import Normalizer
from lcm.io import load_vector, save_npy_atomic, write_bytes_atomic
from lcm.nn.weights import build_with_weights, load_weights, save_weights
from trainers.tasks import get_task

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "weights.npz"
NORMALIZER_FILE = "normalizer.npz"
EOT_FILE = "eot.npy"
CARD_FILE = "card.md"


@dataclasses.dataclass(frozen=True)
class LCMDirConfig:
    """``config.yaml`` of an LCM model directory.

    Attributes:
        family: The trainer task of the family (``trainers.tasks.get_task``), e.g. ``base_lcm``.
        concept_dim: D.
        max_seq_len: Context length the model was trained with (concepts).
        model: The family's model section (as in the training config).
        markers: Task name -> marker sentence (e.g. ``summarize: "[SUMMARY]:"``).
        eot_text: The sentence whose encoding is the end-of-text concept.
        codec: The codec whose space the model lives in ("default" or a description).
    """

    family: str
    concept_dim: int
    max_seq_len: int
    model: dict[str, Any]
    markers: dict[str, str] = dataclasses.field(default_factory=dict)
    eot_text: str = "End of text."
    codec: str = "default"

    def __post_init__(self) -> None:
        if get_task(self.family).build_network is None:  # raises for an unknown family
            raise ConfigError(f"{self.family!r} is not a next-concept family")
        if self.concept_dim < 1 or self.max_seq_len < 2:
            raise ConfigError("concept_dim must be >= 1 and max_seq_len >= 2")

    def model_config(self) -> Any:
        """The typed model section."""
        return from_dict(get_task(self.family).model_config, self.model, prefix="model.")


@dataclasses.dataclass(frozen=True, eq=False)
class LCMModel:
    """An opened model directory.

    Attributes:
        config: Its config.
        model: The next-concept model.
        normalizer: Its concept normalizer.
        eot: [D] float32 raw end-of-text concept.
        path: Where it was loaded from.
    """

    config: LCMDirConfig
    model: nnx.Module
    normalizer: Normalizer
    eot: np.ndarray
    path: Path


def save_lcm(
    path: str | os.PathLike[str],
    model: nnx.Module,
    config: LCMDirConfig,
    normalizer: Normalizer,
    eot: np.ndarray,
    card: str,
    *,
    weights_dtype: str = "float32",
) -> None:
    """Write a model directory (each file atomically).

    Raises:
        ValueError: ``eot`` or the normalizer does not have dimension ``config.concept_dim``.
    """
    eot = np.asarray(eot, np.float32).reshape(-1)
    if eot.shape != (config.concept_dim,) or normalizer.dim != config.concept_dim:
        raise ValueError(
            f"eot {eot.shape} / normalizer D={normalizer.dim} do not match concept_dim "
            f"{config.concept_dim}"
        )
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_weights(model, path / WEIGHTS_FILE, weights_dtype)
    normalizer.save(path / NORMALIZER_FILE)
    save_npy_atomic(path / EOT_FILE, eot)
    write_bytes_atomic(path / CARD_FILE, card.encode())
    save_yaml(to_dict(config), path / CONFIG_FILE)  # last: its presence marks a complete dir


def load_lcm(path: str | os.PathLike[str]) -> LCMModel:
    """Open a model directory, validating every file.

    Raises:
        FileNotFoundError: The directory or one of its files is missing.
        ConfigError: Unknown or mistyped config keys.
        ValueError: Missing, unexpected, wrongly shaped or non-finite weights; an eot
            vector or normalizer of the wrong dimension.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"LCM model directory not found: {path}")
    for name in (CONFIG_FILE, WEIGHTS_FILE, NORMALIZER_FILE, EOT_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"{path}: missing {name} (an LCM model directory holds {CONFIG_FILE}, "
                f"{WEIGHTS_FILE}, {NORMALIZER_FILE}, {EOT_FILE} and {CARD_FILE})"
            )
    try:
        config = from_dict(LCMDirConfig, read_yaml(path / CONFIG_FILE))
        model_cfg = config.model_config()
    except ConfigError as e:
        raise ConfigError(f"{path / CONFIG_FILE}: {e}") from e
    build = get_task(config.family).build_network
    model = build_with_weights(
        lambda: build(model_cfg, config.concept_dim, nnx.Rngs(0)),
        load_weights(path / WEIGHTS_FILE),
        source=str(path / WEIGHTS_FILE),
    )
    normalizer = Normalizer.load(path / NORMALIZER_FILE)
    eot = load_vector(path / EOT_FILE)
    if normalizer.dim != config.concept_dim or eot.shape != (config.concept_dim,):
        raise ValueError(
            f"{path}: normalizer D={normalizer.dim} / eot shape {eot.shape} do not match "
            f"concept_dim {config.concept_dim}"
        )
    return LCMModel(config, model, normalizer, eot, path)

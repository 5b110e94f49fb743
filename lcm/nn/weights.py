"""Model weights as flat ``{"path/to/variable": array}`` dicts, the format of model directories.

A model directory stores its weights in one ``.npz`` of such arrays; loading builds the model
abstractly from its config (no initialization compute) and fills in every variable, checking
that none is missing, unexpected or wrongly shaped.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from lcm.io import write_bytes_atomic


def variable_name(path: Sequence[Any]) -> str:
    """A variable's name in weights files, ``"decoder/blocks/0/ffn/up/kernel"``: the keys of
    its path joined by "/". Takes an nnx state path (str/int keys) or a ``jax.tree_util`` key
    path (``DictKey``, ``SequenceKey``, ...); ``optim.frozen`` prefixes use the same names."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def flat_weights(module: nnx.Module, dtype: str | None = None) -> dict[str, np.ndarray]:
    """Every variable of ``module`` (parameters and buffers) as ``{"a/b/c": array}``.

    Args:
        module: The model.
        dtype: Cast floating-point arrays to this storage dtype (e.g. "float16"); integer
            arrays keep theirs.
    """
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(module)):
        arr = np.asarray(var.get_value())
        if dtype is not None and np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(dtype)
        out[variable_name(path)] = arr
    return out


def save_weights(module: nnx.Module, path: str | Path, dtype: str | None = None) -> int:
    """Write :func:`flat_weights` to an ``.npz`` atomically; returns the number of values."""
    arrays = flat_weights(module, dtype)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(Path(path), buffer.getvalue())
    return sum(a.size for a in arrays.values())


def load_weights(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a weights ``.npz``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a readable ``.npz`` (e.g. truncated).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable weights file ({e})") from e


def build_with_weights(
    build: Callable[[], nnx.Module], weights: dict[str, np.ndarray], *, source: str = "weights"
) -> nnx.Module:
    """The module ``build()`` would make, holding ``weights`` instead of fresh values.

    Args:
        build: Constructs the module (traced abstractly: nothing is initialized).
        weights: Flat arrays from :func:`flat_weights` / :func:`load_weights`.
        source: Where the weights came from, for error messages.

    Raises:
        ValueError: Naming the first missing, unexpected or wrongly shaped variable.
    """
    graphdef, state = nnx.split(nnx.eval_shape(build))
    flat = [(variable_name(p), p, v) for p, v in nnx.to_flat_state(state)]
    missing = [name for name, _, _ in flat if name not in weights]
    if missing:
        raise ValueError(f"{source}: missing variable {missing[0]!r} ({len(missing)} missing)")
    unexpected = sorted(set(weights) - {name for name, _, _ in flat})
    if unexpected:
        raise ValueError(f"{source}: unexpected variable {unexpected[0]!r} for this config")
    leaves = []
    for name, p, v in flat:
        arr, expected = weights[name], v.get_value()
        if arr.shape != expected.shape:
            raise ValueError(
                f"{source}: variable {name!r} has shape {arr.shape}, the config needs "
                f"{expected.shape}"
            )
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise ValueError(f"{source}: variable {name!r} holds NaN or infinite values")
        leaves.append((p, v.replace(jnp.asarray(arr, expected.dtype))))
    return nnx.merge(graphdef, nnx.from_flat_state(leaves))

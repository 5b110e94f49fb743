"""Atomic file writes: a temporary name in the same folder, then ``os.replace``.

A reader never sees a half-written file and a crash never leaves one under the final name.
Standard library only, so every layer (and the stdlib-only corpus builder) can use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", encoding: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit publish it as ``path``.

    Args:
        path: Final file name (parent folders are created).
        mode: ``"wb"`` or ``"w"``.
        encoding: Text encoding for ``"w"`` (default UTF-8).

    Yields:
        The open temporary file. On an exception it is deleted and ``path`` is untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports modes 'w' and 'wb', not {mode!r}")
    path = Path(path)
    if path.is_dir():  # before any work: os.replace would fail only at the end
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        kwargs = {"encoding": encoding or "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; data and model files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def load_vector(path: str | os.PathLike) -> Any:
    """A float32 vector from a ``.npy`` file (e.g. ``eot.npy``), flattened.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a readable numeric ``.npy`` (the message names it).
    """
    import numpy as np  # only here: the rest of this module is standard library

    try:
        array = np.load(path, allow_pickle=False)
        return np.asarray(array, np.float32).reshape(-1)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, TypeError, EOFError) as e:
        raise ValueError(f"{path}: not a readable vector (.npy): {e}") from None


def save_npy_atomic(path: str | os.PathLike, array: Any) -> None:
    """``np.save`` an array atomically (temporary name, then rename)."""
    import numpy as np

    with atomic_write(path, "wb") as f:
        np.save(f, array)


@contextlib.contextmanager
def replaced_on_success(path: str | os.PathLike) -> Iterator[Path]:
    """A directory to write in place of ``path``, swapped in only if the block succeeds.

    When ``path`` holds files, the block writes into a fresh sibling directory; on success the
    old contents are renamed away, the new ones renamed in, and the old removed. On an
    exception the new directory is deleted and ``path`` is untouched. An absent or empty
    ``path`` is written directly (there is nothing to lose).

    Yields:
        The directory to write.
    """
    final = Path(path)
    if not final.is_dir() or not any(final.iterdir()):
        yield final
        return
    staging = staging_dir(final)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_dir(staging, final)


def staging_dir(path: str | os.PathLike, tag: str | int | None = None) -> Path:
    """The sibling directory :func:`replaced_on_success` writes in place of ``path``:
    ``.NAME.new-TAG`` (``TAG``: this process's id unless given, so that several processes can
    agree on one)."""
    final = Path(path)
    return final.parent / f".{final.name}.new-{os.getpid() if tag is None else tag}"


def replace_dir(new: str | os.PathLike, final: str | os.PathLike) -> None:
    """Put directory ``new`` in the place of directory ``final``: ``final`` is renamed away,
    ``new`` renamed in, and the old contents removed."""
    new, final = Path(new), Path(final)
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)

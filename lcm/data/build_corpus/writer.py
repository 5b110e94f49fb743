"""Atomic, reproducible ``.jsonl.gz`` output."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lcm.io import atomic_write


def write_jsonl_gz(path: str | Path, records: Iterable[Mapping[str, Any]]) -> int:
    """Write ``records`` as gzip-compressed JSON lines, atomically.

    The data goes to a temporary file in the destination directory that is renamed over
    ``path`` only once complete, so an interrupted build never leaves a truncated file that
    looks finished. The gzip header carries no timestamp or name, so equal records give
    byte-identical files.

    Args:
        path: Destination file (``*.jsonl.gz``); parent directories are created.
        records: JSON-serializable mappings, written in order, one per line.

    Returns:
        The number of records written.
    """
    count = 0
    with (
        atomic_write(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
    ):
        for record in records:
            gz.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
            count += 1
    return count

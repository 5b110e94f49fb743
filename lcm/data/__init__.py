"""Document data pipeline: segmentation, streaming readers and Parquet shards.

``from lcm.data import split_sentences`` stays cheap: the shard names (which need pyarrow)
are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lcm.text.readers import DataError, Document, ReadStats, iter_documents, read_documents
from lcm.text.segment import (
    segment_document,
    split_paragraphs,
    split_sentences,
    text_sentences,
)

if TYPE_CHECKING:
    from lcm.data.shards import SHARD_SCHEMA, ShardWriter, read_shards, write_documents

__all__ = [
    "SHARD_SCHEMA",
    "DataError",
    "Document",
    "ReadStats",
    "ShardWriter",
    "iter_documents",
    "read_documents",
    "read_shards",
    "segment_document",
    "split_paragraphs",
    "split_sentences",
    "text_sentences",
    "write_documents",
]

_LAZY = {"SHARD_SCHEMA", "ShardWriter", "read_shards", "write_documents"}


def __getattr__(name: str) -> Any:
    # PEP 562: load lcm.data.shards (and pyarrow) only when a shard name is first used.
    if name in _LAZY:
        return getattr(importlib.import_module("lcm.data.shards"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

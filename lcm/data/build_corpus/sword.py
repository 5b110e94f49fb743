"""Minimal reader for SWORD ``zText``/``zCom`` modules (the zVerse format), without libsword.

A module directory holds, per testament (``ot``/``nt``) and block granularity (``b`` book,
``c`` chapter, ``v`` verse), three files:

* ``<t>.<g>zs``: block index, records of (u32 offset, u32 compressed size, u32 size);
* ``<t>.<g>zv``: verse index, records of (u32 block, u32 offset, u16 size) for zVerse or
  (u32 block, u32 offset, u32 size) for zVerse4;
* ``<t>.<g>zz``: the zlib-compressed blocks.

All integers are little-endian.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

_BLOCK = struct.Struct("<III")
_VERSE_FORMATS = ((10, "<IIH"), (12, "<III"))


def _verse_record_size(blocks_path: Path, verses_path: Path) -> int:
    """Detect 10-byte (zVerse) or 12-byte (zVerse4) verse index records.

    A layout is accepted when every record points at an existing block (or is empty).
    """
    n_blocks = blocks_path.stat().st_size // _BLOCK.size
    verses = verses_path.read_bytes()
    for step, fmt in _VERSE_FORMATS:
        if len(verses) % step:
            continue
        unpack = struct.Struct(fmt).unpack_from
        records = (unpack(verses, i) for i in range(0, len(verses) - step + 1, step))
        if all(block < n_blocks or size == 0 for block, _, size in records):
            return step
    raise ValueError(f"unknown SWORD verse index format: {verses_path}")


def iter_entries(module_dir: str | Path) -> Iterator[tuple[str, int, str]]:
    """Yield every non-empty entry of a SWORD zText/zCom module.

    Linked entries (several verses sharing one text) are yielded once.

    Args:
        module_dir: The module directory, e.g. ``.../modules/texts/ztext/engWEB2015eb``.

    Yields:
        ``(testament, entry_index, raw_markup)`` with testament ``"ot"`` or ``"nt"``.
    """
    module_dir = Path(module_dir)
    for testament in ("ot", "nt"):
        blocks_path = next(
            (
                module_dir / f"{testament}.{g}zs"
                for g in "bcv"
                if (module_dir / f"{testament}.{g}zs").exists()
            ),
            None,
        )
        if blocks_path is None:
            continue
        stem = str(blocks_path)[:-1]
        verses_path, data_path = Path(stem + "v"), Path(stem + "z")
        step = _verse_record_size(blocks_path, verses_path)
        verse_fmt = struct.Struct(dict(_VERSE_FORMATS)[step])
        blocks = blocks_path.read_bytes()
        data = data_path.read_bytes()
        verses = verses_path.read_bytes()
        cached_block, cached_text = -1, b""
        seen: set[tuple[int, int, int]] = set()
        for i in range(0, len(verses) - step + 1, step):
            block, offset, size = verse_fmt.unpack_from(verses, i)
            if size == 0 or (block, offset, size) in seen:
                continue
            seen.add((block, offset, size))
            if block != cached_block:  # entries are block-ordered: one cached block is enough
                start, length, _ = _BLOCK.unpack_from(blocks, block * _BLOCK.size)
                cached_block, cached_text = block, zlib.decompress(data[start : start + length])
            raw = cached_text[offset : offset + size].decode("utf-8", "replace")
            yield testament, i // step, raw


_NOTES = re.compile(r"<note\b.*?</note>", re.S)
_REFS = re.compile(r"<(scripRef|reference)\b.*?</\1>", re.S)
_TITLES = re.compile(r"<(title)\b.*?</\1>", re.S)
_BREAKS = re.compile(r"<(br|p|div|lb|l|lg|chapter)\b[^>]*/?>|</(p|div|l|lg)>")
_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"[ \t]+")
_SPACE_BEFORE = re.compile(r" ([.,;:!?\u2019\u201d)\]])")
_SPACE_AFTER = re.compile(r"([\u201c\u2018(\[]) ")
_DANGLING = re.compile(r"\s*[;,]\s*(?=[;,.])")


def strip_markup(text: str) -> str:
    """Turn OSIS/ThML/GBF-ish entry markup into plain text, one paragraph per line.

    Footnotes, cross references and headings are dropped (they are not running prose).

    Args:
        text: Raw entry markup.

    Returns:
        Plain text with paragraphs separated by newlines.
    """
    text = _NOTES.sub("", text)
    text = _REFS.sub("", text)
    text = _TITLES.sub("\n", text)
    text = _BREAKS.sub("\n", text)
    text = html.unescape(_TAGS.sub("", text))
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE.sub(r"\1", text)
    text = _SPACE_AFTER.sub(r"\1", text)
    text = _DANGLING.sub("", text)  # ", ;" left behind by removed references
    return "\n".join(line.strip() for line in text.split("\n") if line.strip())

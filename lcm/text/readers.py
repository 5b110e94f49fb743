"""Streaming document readers: plain text, one-document-per-line, JSONL and the pairs format.

Every reader yields :class:`Document` objects one at a time, so a corpus never has to fit in
memory. Input is decoded line by line with strict UTF-8; ``.gz`` files are decompressed on the
fly. Bad input never surfaces as a raw ``json.JSONDecodeError`` or ``UnicodeDecodeError`` deep
in the stack: with ``on_error="skip"`` the bad record is skipped, counted in :class:`ReadStats`
and logged (with ``file:line``) for the first few occurrences; with ``on_error="raise"`` a
:class:`DataError` naming ``file:line`` and the problem is raised.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import json
import logging
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lcm.text.segment import split_paragraphs

__all__ = ["DataError", "Document", "ReadStats", "iter_documents", "read_documents"]

logger = logging.getLogger(__name__)

FORMATS = ("auto", "text", "lines", "jsonl", "pairs")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst")
_JSON_KINDS = {list: "an array", int: "a number", float: "a number", str: "a string"}
_JSON_KINDS.update({bool: "a boolean", type(None): "null"})
_MAX_WARNINGS_PER_FILE = 5  # then one "further problems not logged" line; counts stay exact


class DataError(ValueError):
    """Bad input data (or an unusable input path), with the location when known.

    Attributes:
        path: The offending file, if any.
        line: The 1-based line number in ``path``, if any.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        super().__init__(message)
        self.path = path
        self.line = line


# Fields holding a record's text when it has no "paragraphs" or "text" (glossaries).
_GLOSSARY_FIELDS = ("definitions", "examples")


@dataclass(frozen=True)
class Document:
    """One document: an id, its paragraphs and where it came from.

    Attributes:
        id: Document id (the record's ``"id"``, else ``"{source}:{line}"`` or the file stem).
        paragraphs: Non-empty paragraphs, in order. Line breaks inside a paragraph are kept
            (the segmenter uses them to find bullet lines).
        source: The record's ``"source"``, else the file name without data suffixes
            (``austen.docs.jsonl.gz`` -> ``austen``).
        meta: Remaining record fields, e.g. ``{"title": ...}`` for corpus documents or
            ``{"summary", "split", "id", "section", ...}`` for pairs.
    """

    id: str
    paragraphs: tuple[str, ...]
    source: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The paragraphs joined by blank lines."""
        return "\n\n".join(self.paragraphs)


@dataclass
class ReadStats:
    """Counts of what the readers did; pass one instance to accumulate over several files.

    ``skipped_*`` count records (JSONL/pairs/lines) that were dropped, except in ``text``
    format where ``skipped_bad_utf8`` counts dropped lines of the one document.
    """

    files: int = 0
    documents: int = 0
    empty_files: int = 0  # files with no content at all (zero documents from them)
    skipped_empty: int = 0  # record whose text/paragraphs are empty or whitespace only
    skipped_bad_json: int = 0  # line is not valid JSON
    skipped_not_object: int = 0  # valid JSON but not an object (a list, a number, ...)
    skipped_bad_utf8: int = 0  # line is not valid UTF-8
    skipped_binary: int = 0  # line holds NUL bytes: binary data, not text
    skipped_no_text: int = 0  # object without "text"/"paragraphs" (pairs: "document")
    skipped_bad_field: int = 0  # a field of the wrong type ("paragraphs": 3, "summary": null)
    read_errors: int = 0  # a file that could not be read to the end (corrupt/truncated gzip)
    filtered_split: int = 0  # records of another split than requested (not an error)
    blank_lines: int = 0  # blank lines between JSONL records (not an error)

    @property
    def skipped(self) -> int:
        """Total number of records dropped because of bad input."""
        return sum(v for k, v in dataclasses.asdict(self).items() if k.startswith("skipped_"))

    def as_dict(self) -> dict[str, int]:
        """All counters (plus ``skipped``) as a plain dict."""
        return {**dataclasses.asdict(self), "skipped": self.skipped}

    def summary(self) -> str:
        """One human-readable line; every non-zero problem counter is named."""
        parts = [f"read {self.documents} documents from {self.files} file(s)"]
        bad = {
            k.removeprefix("skipped_"): v
            for k, v in dataclasses.asdict(self).items()
            if k.startswith("skipped_") and v
        }
        if bad:
            detail = ", ".join(f"{k}={v}" for k, v in bad.items())
            parts.append(f"skipped {self.skipped} bad record(s) ({detail})")
        else:
            parts.append("skipped 0 bad records")
        if self.empty_files:
            parts.append(f"{self.empty_files} empty file(s)")
        if self.read_errors:
            parts.append(f"{self.read_errors} unreadable/truncated file(s)")
        if self.filtered_split:
            parts.append(f"{self.filtered_split} record(s) of other splits filtered out")
        return "; ".join(parts)


class _FileContext:
    """Per-file error policy: count + log (skip) or raise, always with ``file:line``."""

    def __init__(self, path: str, stats: ReadStats, on_error: str, *, quiet: bool = False):
        self.path = path
        self.stats = stats
        self.on_error = on_error
        self.quiet = quiet  # no logging (format sniffing reads the file a first time)
        self.warnings = 0
        self.failed = False  # the file could not be read to the end
        self.nonblank_lines = 0  # lines with any non-whitespace byte, valid UTF-8 or not

    def bad(self, line: int | None, counter: str, problem: str) -> None:
        """Report a bad record: raise, or count it in ``counter`` and log the first few."""
        where = f"{self.path}:{line}" if line is not None else self.path
        if self.on_error == "raise":
            raise DataError(f"{where}: {problem}", path=self.path, line=line)
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        self.warnings += 1
        if self.quiet:
            return
        if self.warnings <= _MAX_WARNINGS_PER_FILE:
            logger.warning("%s: %s (skipped)", where, problem)
        if self.warnings == _MAX_WARNINGS_PER_FILE:
            logger.warning("%s: further problems in this file are counted, not logged", self.path)


def _strip_suffixes(name: str) -> str:
    """``austen.docs.jsonl.gz`` -> ``austen``; ``notes.txt`` -> ``notes``."""
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix in (*_JSONL_SUFFIXES, ".json", *_TEXT_SUFFIXES):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.removesuffix(".docs")


def _open_binary(path: str) -> IO[bytes]:
    """Open ``path`` for binary reading, transparently gunzipping ``*.gz``."""
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")  # noqa: SIM115 - closed by the caller's ``with``


def _iter_lines(path: str, ctx: _FileContext) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` with strict per-line UTF-8 decoding.

    A line that is not valid UTF-8 is reported via ``ctx`` (counted as ``skipped_bad_utf8``)
    instead of being silently repaired. A corrupt or truncated gzip stream ends the file with
    one ``read_errors`` count (or a ``DataError``).
    """
    lineno = 0
    try:
        with _open_binary(path) as f:
            for lineno, raw in enumerate(f, 1):
                if raw.strip():
                    ctx.nonblank_lines += 1
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    ctx.bad(lineno, "skipped_bad_utf8", f"invalid UTF-8 at byte {e.start}")
                    continue
                if "\x00" in line:  # valid UTF-8 but binary (zero-filled, images, ...)
                    ctx.bad(lineno, "skipped_binary", "NUL bytes: binary data, not text")
                    continue
                if lineno == 1 and line.startswith("\ufeff"):  # tolerate a UTF-8 BOM
                    line = line[1:]
                yield lineno, line
    except (OSError, EOFError, zlib.error) as e:
        # gzip.BadGzipFile is an OSError; a truncated stream raises EOFError.
        if ctx.on_error == "raise":
            raise DataError(
                f"{path}:{lineno + 1}: cannot read file: {e}", path=path, line=lineno + 1
            ) from e
        ctx.failed = True
        ctx.stats.read_errors += 1
        if not ctx.quiet:
            logger.warning("%s:%d: cannot read the rest of the file: %s", path, lineno + 1, e)


def _sniff_format(path: str, ctx: _FileContext) -> str:
    """Guess ``jsonl`` vs ``text`` for a file without a telling suffix."""
    name = path[:-3] if path.endswith(".gz") else path
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(_TEXT_SUFFIXES):
        return "text"
    probe = _FileContext(path, ReadStats(), "skip", quiet=True)  # the real pass reports
    for _, line in _iter_lines(path, probe):
        if line.strip():
            return "jsonl" if line.lstrip().startswith("{") else "text"
    return "text"


def _check_empty(ctx: _FileContext) -> None:
    """Count (and log) a file that had no content at all, so it never passes silently."""
    if ctx.nonblank_lines == 0 and not ctx.failed:
        ctx.stats.empty_files += 1
        if not ctx.quiet:
            logger.warning("%s: empty file (no documents)", ctx.path)


def _read_text(path: str, source: str, ctx: _FileContext) -> Iterator[Document]:
    """The whole file is one document; paragraphs are separated by blank lines."""
    paragraphs: list[str] = []
    cur: list[str] = []
    for _, line in _iter_lines(path, ctx):
        if line.strip():
            cur.append(line.rstrip("\r\n"))
        elif cur:
            paragraphs.append("\n".join(cur).strip())
            cur = []
    if cur:
        paragraphs.append("\n".join(cur).strip())
    if paragraphs:
        ctx.stats.documents += 1
        yield Document(id=source, paragraphs=tuple(paragraphs), source=source, meta={})
    else:
        _check_empty(ctx)


def _read_lines(path: str, source: str, ctx: _FileContext) -> Iterator[Document]:
    """One document per non-empty line."""
    for lineno, line in _iter_lines(path, ctx):
        text = line.strip()
        if text:
            ctx.stats.documents += 1
            yield Document(id=f"{source}:{lineno}", paragraphs=(text,), source=source, meta={})
    _check_empty(ctx)


def _doc_from_record(
    rec: dict[str, Any], fmt: str, lineno: int, source: str, ctx: _FileContext
) -> Document | None:
    """Validate one JSON object and build its Document (None if it was reported as bad)."""
    rid = rec.get("id")
    if rid is not None and not isinstance(rid, (str, int)):
        ctx.bad(lineno, "skipped_bad_field", f'"id" must be a string, got {type(rid).__name__}')
        return None
    doc_id = str(rid) if rid is not None and str(rid) else f"{source}:{lineno}"
    src = rec.get("source")
    doc_source = src if isinstance(src, str) and src else source

    is_pair = fmt == "pairs" or (fmt == "auto" and "summary" in rec and "document" in rec)
    if is_pair:
        document = rec.get("document")
        if document is None:
            ctx.bad(lineno, "skipped_no_text", 'pairs record without "document"')
            return None
        if not isinstance(document, str):
            ctx.bad(lineno, "skipped_bad_field", '"document" must be a string')
            return None
        if not isinstance(rec.get("summary"), str):
            ctx.bad(lineno, "skipped_bad_field", 'pairs record needs a string "summary"')
            return None
        paragraphs = split_paragraphs(document)
        meta = {k: v for k, v in rec.items() if k not in ("document", "source")}
    else:
        if "paragraphs" in rec:
            paras = rec["paragraphs"]
            if not isinstance(paras, list) or not all(isinstance(p, str) for p in paras):
                ctx.bad(lineno, "skipped_bad_field", '"paragraphs" must be a list of strings')
                return None
            paragraphs = [p.strip() for p in paras if p.strip()]
        elif "text" in rec:
            if not isinstance(rec["text"], str):
                ctx.bad(lineno, "skipped_bad_field", '"text" must be a string')
                return None
            paragraphs = split_paragraphs(rec["text"])
        elif any(key in rec for key in _GLOSSARY_FIELDS):
            paragraphs = []
        else:
            keys = ", ".join(sorted(rec)[:6]) or "none"
            ctx.bad(lineno, "skipped_no_text", f'no "text" or "paragraphs" field (keys: {keys})')
            return None
        if not paragraphs:
            # Glossary records (WordNet in the shared corpus) keep their text in these lists;
            # each gloss or example is its own paragraph.
            paragraphs = [
                item.strip()
                for key in _GLOSSARY_FIELDS
                if isinstance(rec.get(key), list)
                for item in rec[key]
                if isinstance(item, str) and item.strip()
            ]
        meta = {k: v for k, v in rec.items() if k not in ("text", "paragraphs", "id", "source")}
    if not paragraphs:
        ctx.bad(lineno, "skipped_empty", "document has no text")
        return None
    return Document(id=doc_id, paragraphs=tuple(paragraphs), source=doc_source, meta=meta)


def _read_jsonl(
    path: str, fmt: str, source: str, split: str | None, ctx: _FileContext
) -> Iterator[Document]:
    """One JSON object a line: ``{"text"}`` / ``{"paragraphs"}`` documents or pairs."""
    for lineno, line in _iter_lines(path, ctx):
        if not line.strip():
            ctx.stats.blank_lines += 1
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            ctx.bad(lineno, "skipped_bad_json", f"invalid JSON: {e.msg} at column {e.colno}")
            continue
        except RecursionError:
            ctx.bad(lineno, "skipped_bad_json", "invalid JSON: nested too deeply")
            continue
        if not isinstance(rec, dict):
            kind = _JSON_KINDS.get(type(rec), type(rec).__name__)
            ctx.bad(lineno, "skipped_not_object", f"expected a JSON object, got {kind}")
            continue
        if split is not None and rec.get("split") != split:
            ctx.stats.filtered_split += 1
            continue
        doc = _doc_from_record(rec, fmt, lineno, source, ctx)
        if doc is not None:
            ctx.stats.documents += 1
            yield doc
    _check_empty(ctx)


def read_documents(
    path: str | os.PathLike[str],
    fmt: str = "auto",
    *,
    stats: ReadStats | None = None,
    split: str | None = None,
    on_error: str = "skip",
) -> Iterator[Document]:
    """Stream the documents of one file.

    Formats (``.gz`` is decompressed transparently):

    * ``"text"``: the whole file is one document, paragraphs separated by blank lines.
    * ``"lines"``: one document per non-empty line.
    * ``"jsonl"``: one object a line with ``"text": str`` or ``"paragraphs": [str, ...]``,
      optional ``"id"``, ``"source"``; other fields (``"title"``...) go to ``meta``.
    * ``"pairs"``: the shared pairs format (``"summary"``, ``"document"``, ``"split"``...);
      paragraphs come from ``"document"``, the other fields go to ``meta``.
    * ``"auto"``: ``*.jsonl``/``*.ndjson`` are JSONL, where records having both ``"summary"``
      and ``"document"`` are read as pairs; ``*.txt``/``*.md`` are text; anything else is
      sniffed (a first line starting with ``{`` means JSONL).

    Args:
        path: The file to read.
        fmt: One of ``"auto"``, ``"text"``, ``"lines"``, ``"jsonl"``, ``"pairs"``.
        stats: Counters to update (pass one instance to accumulate over several files).
        split: Keep only records whose ``"split"`` field equals this (JSONL/pairs only).
        on_error: ``"skip"`` (count, log the first few, go on) or ``"raise"`` (DataError).

    Returns:
        An iterator of documents; the file is read lazily as it is consumed.

    Raises:
        ValueError: For an unknown ``fmt``/``on_error`` or ``split`` with text/lines.
        DataError: If ``path`` does not exist or is a directory, or (with
            ``on_error="raise"``) at the first bad record, naming ``file:line``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    if split is not None and fmt in ("text", "lines"):
        raise ValueError(f"split= only applies to JSONL/pairs input, not fmt={fmt!r}")
    p = os.fspath(path)
    if not os.path.exists(p):
        raise DataError(f"{p}: no such file", path=p)
    if os.path.isdir(p):
        raise DataError(f"{p}: is a directory (use iter_documents for directories)", path=p)
    return _read_documents(p, fmt, stats if stats is not None else ReadStats(), split, on_error)


def _read_documents(
    path: str, fmt: str, stats: ReadStats, split: str | None, on_error: str
) -> Iterator[Document]:
    """Generator behind :func:`read_documents` (argument checks already done)."""
    ctx = _FileContext(path, stats, on_error)
    stats.files += 1
    source = _strip_suffixes(Path(path).name)
    if fmt == "auto":
        fmt_used = _sniff_format(path, ctx)
        if fmt_used == "jsonl":
            fmt_used = "auto"  # per record: pairs if it has "summary" and "document"
        elif split is not None:
            raise ValueError(f"{path}: split= only applies to JSONL/pairs input")
    else:
        fmt_used = fmt
    if fmt_used == "text":
        yield from _read_text(path, source, ctx)
    elif fmt_used == "lines":
        yield from _read_lines(path, source, ctx)
    else:
        yield from _read_jsonl(path, fmt_used, source, split, ctx)


def _expand(paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[str]:
    """Expand globs and directories into a de-duplicated, ordered list of files."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[str] = []
    for raw in paths:
        p = os.fspath(raw)
        if any(c in p for c in "*?["):
            matches = sorted(m for m in glob.glob(p, recursive=True) if os.path.isfile(m))
            if not matches:
                raise DataError(f"{p}: no files match", path=p)
            out.extend(matches)
        elif os.path.isdir(p):
            matches = sorted(
                str(f)
                for f in Path(p).rglob("*")
                if f.is_file()
                and not f.name.startswith(".")
                and f.name.removesuffix(".gz").endswith((*_JSONL_SUFFIXES, *_TEXT_SUFFIXES))
            )
            if not matches:
                raise DataError(f"{p}: directory has no .jsonl/.txt files", path=p)
            out.extend(matches)
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def iter_documents(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    fmt: str = "auto",
    **kw: Any,
) -> Iterator[Document]:
    """Stream the documents of several files in order.

    Args:
        paths: Files, glob patterns (``corpus/*.jsonl.gz``) or directories (searched
            recursively for ``.jsonl``/``.ndjson``/``.txt``/``.md``/``.rst``, optionally
            ``.gz``). A single path is accepted too.
        fmt: Input format, see :func:`read_documents`.
        **kw: Passed to :func:`read_documents` (``stats``, ``split``, ``on_error``); one
            ``ReadStats`` accumulates over all files.

    Returns:
        An iterator of documents.

    Raises:
        DataError: If a path does not exist or a glob/directory matches no file (raised
            before any document is produced).
    """
    files = _expand(paths)
    for f in files:
        if not os.path.exists(f):
            raise DataError(f"{f}: no such file", path=f)
    if kw.get("stats") is None:
        kw["stats"] = ReadStats()
    return _chain(files, fmt, kw)


def _chain(files: list[str], fmt: str, kw: dict[str, Any]) -> Iterator[Document]:
    for f in files:
        yield from read_documents(f, fmt, **kw)

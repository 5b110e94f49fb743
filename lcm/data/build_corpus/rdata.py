"""Read datasets from an R package's lazy-load database without R.

R packages ship their ``data/`` as a lazy-load database: ``Rdata.rdx`` (a gzip- or
zlib-compressed serialized index) and ``Rdata.rdb`` (the concatenated, individually
compressed serialized objects). This module implements the small subset of R's XDR
serialization format (versions 2 and 3) that plain data uses: atomic vectors, lists,
pairlists, symbols, attributes, references and the common ALTREP wrappers. That keeps the
corpus builder stdlib-only instead of depending on the ``rdata``/pandas/xarray stack.

Values map to Python as follows: character/logical/integer/double vectors become
:class:`RVector` (a ``list`` with an ``attrs`` dict), lists become :class:`RVector` of
values, pairlists become ``dict`` (tag -> value), symbols become :class:`RSymbol`, ``NULL``
becomes ``None`` and ``NA`` becomes ``None``.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from pathlib import Path
from typing import Any

# SEXP type codes (R's Rinternals.h / serialize.c).
_SYMSXP, _LISTSXP, _CLOSXP, _ENVSXP, _PROMSXP, _LANGSXP = 1, 2, 3, 4, 5, 6
_SPECIALSXP, _BUILTINSXP, _CHARSXP, _LGLSXP, _INTSXP, _REALSXP = 7, 8, 9, 10, 13, 14
_CPLXSXP, _STRSXP, _DOTSXP, _VECSXP, _EXPRSXP, _RAWSXP, _S4SXP = 15, 16, 17, 19, 20, 24, 25
_ALTREP_SXP, _ATTRLISTSXP, _ATTRLANGSXP = 238, 239, 240
_BASEENV_SXP, _EMPTYENV_SXP, _GENERICREFSXP, _CLASSREFSXP = 241, 242, 245, 246
_PERSISTSXP, _PACKAGESXP, _NAMESPACESXP, _BASENAMESPACE_SXP = 247, 248, 249, 250
_MISSINGARG_SXP, _UNBOUNDVALUE_SXP, _GLOBALENV_SXP, _NILVALUE_SXP, _REFSXP = (
    251,
    252,
    253,
    254,
    255,
)

_NA_INTEGER = -(2**31)
_LATIN1_MASK, _UTF8_MASK = 1 << 2, 1 << 3


class RFormatError(ValueError):
    """Raised when a blob is not R serialization data this reader understands."""


class RSymbol(str):
    """An R symbol (a name), kept distinct from character data."""


class RVector(list):
    """An R vector or list: a Python list plus the R attributes (names, class, ...)."""

    def __init__(self, values: Any = (), attrs: dict[str, Any] | None = None) -> None:
        super().__init__(values)
        self.attrs: dict[str, Any] = attrs or {}

    @property
    def names(self) -> list[str] | None:
        """The ``names`` attribute, if any."""
        return self.attrs.get("names")


class _Env:
    """Placeholder for an R environment (its contents are never needed for data)."""


class _Reader:
    """Sequential XDR reader with R's reference table."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.refs: list[Any] = []

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise RFormatError("truncated R serialization data")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two more ints
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def string(self, n: int) -> bytes:
        return self.take(n)

    # -- items ---------------------------------------------------------------------------
    def item(self) -> Any:
        flags = self.int()
        kind = flags & 0xFF
        levels = flags >> 12
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))

        if kind == _NILVALUE_SXP:
            return None
        if kind in (
            _EMPTYENV_SXP,
            _BASEENV_SXP,
            _GLOBALENV_SXP,
            _UNBOUNDVALUE_SXP,
            _MISSINGARG_SXP,
            _BASENAMESPACE_SXP,
        ):
            return _Env()
        if kind == _REFSXP:
            index = flags >> 8
            if index == 0:
                index = self.int()
            return self.refs[index - 1]
        if kind == _PERSISTSXP:
            value = self._string_vec()
            self.refs.append(value)
            return value
        if kind == _SYMSXP:
            sym = RSymbol(self.item() or "")
            self.refs.append(sym)
            return sym
        if kind in (_PACKAGESXP, _NAMESPACESXP):
            env = _Env()
            self._string_vec()
            self.refs.append(env)
            return env
        if kind == _ENVSXP:
            env = _Env()
            self.refs.append(env)  # registered before its contents, which may refer back
            self.int()  # locked flag
            for _ in range(4):  # enclosure, frame, hash table, attributes
                self.item()
            return env
        if kind in (_LISTSXP, _LANGSXP, _CLOSXP, _PROMSXP, _DOTSXP, _ATTRLISTSXP, _ATTRLANGSXP):
            return self._pairlist(has_attr, has_tag)
        if kind in (_SPECIALSXP, _BUILTINSXP):
            return RSymbol(self.string(self.int()).decode("ascii", "replace"))
        if kind == _CHARSXP:
            n = self.int()
            if n == -1:
                return None
            raw = self.string(n)
            return raw.decode("latin-1" if levels & _LATIN1_MASK else "utf-8", "replace")
        if kind == _ALTREP_SXP:
            return self._altrep()
        if kind == _S4SXP:
            value: Any = RVector()
        elif kind in (_LGLSXP, _INTSXP):
            n = self.length()
            ints = struct.unpack(f">{n}i", self.take(4 * n))
            value = RVector(None if v == _NA_INTEGER else v for v in ints)
            if kind == _LGLSXP:
                value = RVector(v if v is None else bool(v) for v in value)
        elif kind == _REALSXP:
            n = self.length()
            value = RVector(struct.unpack(f">{n}d", self.take(8 * n)))
        elif kind == _CPLXSXP:
            n = self.length()
            parts = struct.unpack(f">{2 * n}d", self.take(16 * n))
            value = RVector(complex(parts[i], parts[i + 1]) for i in range(0, 2 * n, 2))
        elif kind in (_STRSXP, _VECSXP, _EXPRSXP):  # elements are CHARSXPs or any items
            n = self.length()
            value = RVector(self.item() for _ in range(n))
        elif kind == _RAWSXP:
            value = RVector(self.take(self.length()))
        else:
            raise RFormatError(f"unsupported R object type {kind}")
        if has_attr:
            value.attrs = _as_attrs(self.item())
        return value

    def _string_vec(self) -> list[Any]:
        if self.int() != 0:
            raise RFormatError("bad string vector header")
        return [self.item() for _ in range(self.int())]

    def _pairlist(self, has_attr: bool, has_tag: bool) -> dict[str, Any]:
        """Read a pairlist iteratively (they can be long) into an ordered dict."""
        out: dict[str, Any] = {}
        position = 0
        while True:
            if has_attr:
                self.item()
            tag = self.item() if has_tag else None
            out[str(tag) if tag is not None else f"[[{position}]]"] = self.item()
            position += 1
            flags = self.int()
            kind = flags & 0xFF
            if kind not in (_LISTSXP, _LANGSXP, _ATTRLISTSXP, _ATTRLANGSXP):
                self.pos -= 4  # not a cons cell: hand the cdr back to the generic reader
                tail = self.item()
                if tail is not None:
                    out[f"[[{position}]]"] = tail
                return out
            has_attr = bool(flags & (1 << 9))
            has_tag = bool(flags & (1 << 10))

    def _altrep(self) -> Any:
        """Expand the ALTREP classes R writes for plain data (sequences, wrappers)."""
        info = self.item()
        state = self.item()
        attrs = self.item()
        cls = str(next(iter(info.values()))) if isinstance(info, dict) and info else ""
        if cls in ("compact_intseq", "compact_realseq"):
            n, start, step = state
            value = RVector(start + i * step for i in range(int(n)))
            if cls == "compact_intseq":
                value = RVector(int(v) for v in value)
        elif cls.startswith("wrap_"):
            # wrapper state is a pairlist (payload, metadata)
            payload = next(iter(state.values())) if isinstance(state, dict) else state[0]
            value = RVector(payload)
        elif cls == "deferred_string":
            payload = next(iter(state.values())) if isinstance(state, dict) else state[0]
            value = RVector(None if v is None else _r_num_str(v) for v in payload)
        else:
            raise RFormatError(f"unsupported ALTREP class {cls!r}")
        if attrs is not None:
            value.attrs = _as_attrs(attrs)
        return value


def _r_num_str(v: float | int) -> str:
    """Format a number the way R's as.character() does for the common cases."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v)


def _as_attrs(pairlist: Any) -> dict[str, Any]:
    return dict(pairlist) if isinstance(pairlist, dict) else {}


def unserialize(data: bytes) -> Any:
    r"""Decode one R-serialized object (XDR format, version 2 or 3).

    Args:
        data: The serialized bytes, starting with the ``X\\n`` format marker.

    Returns:
        The decoded value (see the module docstring for the mapping).

    Raises:
        RFormatError: If the data is not XDR serialization or uses unsupported types.
    """
    if data[:2] != b"X\n":
        raise RFormatError("only XDR ('X\\n') R serialization is supported")
    reader = _Reader(data)
    reader.pos = 2
    version = reader.int()
    reader.int()  # writer's R version
    reader.int()  # minimal R version to read it
    if version == 3:
        reader.string(reader.int())  # native encoding name
    elif version != 2:
        raise RFormatError(f"unsupported R serialization version {version}")
    return reader.item()


def _decompress_entry(blob: bytes) -> bytes:
    """Decompress one lazy-load record: 4-byte big-endian length, then the payload.

    R >= 2.10 may prefix the payload with a type byte: ``Z`` zlib, ``2`` bzip2, ``X`` xz,
    ``0`` stored. Older records are plain zlib.
    """
    size = struct.unpack(">I", blob[:4])[0]
    kind, body = blob[4:5], blob[5:]
    if kind == b"Z":
        raw = zlib.decompress(body)
    elif kind == b"2":
        raw = bz2.decompress(body)
    elif kind == b"X":
        raw = lzma.decompress(body)
    elif kind == b"0":
        raw = body
    else:
        raw = zlib.decompress(blob[4:])
    if len(raw) != size:
        raise RFormatError(f"lazy-load record: expected {size} bytes, got {len(raw)}")
    return raw


def load_lazy(prefix: str | Path) -> dict[str, Any]:
    """Load every dataset of an R lazy-load database.

    Args:
        prefix: Path without extension, e.g. ``.../janeaustenr/data/Rdata`` (for
            ``Rdata.rdx`` and ``Rdata.rdb``).

    Returns:
        Dataset name -> decoded value, in the database's order.

    Raises:
        RFormatError: If the index or a record cannot be decoded.
    """
    prefix = Path(prefix)
    index_blob = prefix.with_suffix(".rdx").read_bytes()
    if index_blob[:2] == b"\x1f\x8b":
        index = unserialize(gzip.decompress(index_blob))
    else:
        index = unserialize(_decompress_entry(index_blob))
    if not isinstance(index, RVector) or not index.names:
        raise RFormatError(f"{prefix}.rdx: not a lazy-load index")
    variables = dict(zip(index.names, index, strict=True))["variables"]
    database = prefix.with_suffix(".rdb").read_bytes()
    out: dict[str, Any] = {}
    for name, (offset, length) in zip(variables.names or [], variables, strict=True):
        offset, length = int(offset), int(length)
        out[name] = unserialize(_decompress_entry(database[offset : offset + length]))
    return out

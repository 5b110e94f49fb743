"""Summary/document pairs from Debian package descriptions.

``summary`` is a package's one-line description, ``document`` its long description cleaned
of control-file formatting: wrapped lines are re-joined, `` .`` lines become paragraph
breaks, bullet lists and verbatim (indented) blocks are dropped, a dangling lead-in such as
"Features include:" is removed, and paragraphs without a prose sentence are removed.

On Debian >= 7 the ``Packages`` indexes (hence ``apt-cache dumpavail``) carry only the short
description plus a ``Description-md5``; the long text lives in the ``Translation-en``
indexes, joined here through that md5.

Filtering and dedup, in order:

1. transitional/dummy packages, documents without prose, non-Latin text and documents of
   fewer than 3 sentences are skipped;
2. identical documents are collapsed, then documents whose first paragraph is identical
   (the ``libfoo``/``libfoo-dev``/``libfoo-doc`` family) are collapsed to one
   representative: the binary named like its source package, else the longest document;
3. sentences found in >= 20 documents (family boilerplate like "This package contains the
   development files.") are deleted, the 3-sentence filter is applied again and identical
   documents are collapsed again.

The split is a hash of the *source* package (5 % test, 5 % valid, 90 % train), so a family
never straddles splits. Records are sorted by id, so equal inputs give identical output.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lcm.data.build_corpus.textutil import is_prose_sentence, split_sentences

MIN_SENTENCES = 3
BOILERPLATE_DF = 20
# A first paragraph shorter than this (after normalization) is too generic to define a
# package family; such documents are only deduplicated on their full text.
FAMILY_KEY_MIN_CHARS = 60

_BULLET = re.compile(r"^\s*(?:[-*+o\u2022\u25e6]|\d{1,2}[.)]|[a-z][)])\s+\S")
_SKIP_SUMMARY = re.compile(r"\b(transitional|dummy)\b.*\bpackage\b|\btransitional package\b", re.I)
_SKIP_LONG = re.compile(r"\b(transitional|dummy) package\b", re.I)
_WS = re.compile(r"\s+")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@dataclass
class Package:
    """One binary package with a long description, on its way to becoming a pair."""

    id: str
    summary: str
    raw: str
    source: str
    section: str
    paras: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    document: str = ""

    def set_paragraphs(self, paras: list[str]) -> None:
        """Set the cleaned paragraphs and derive the sentences and the document."""
        self.paras = paras
        self.sentences = [s for p in paras for s in split_sentences(p, nfc=False)]
        self.document = "\n\n".join(paras).strip()


# ----------------------------------------------------------------------------- parsing
def parse_stanzas(text: str) -> Iterator[dict[str, str]]:
    """Parse deb822 text (``Packages``, ``Translation-en``, dumpavail output).

    Args:
        text: The whole index as text.

    Yields:
        One field dict per stanza; continuation lines are kept verbatim, each prefixed by
        a newline, exactly as they appear after the first line.
    """
    for block in re.split(r"\n\s*\n", text):
        record: dict[str, str] = {}
        key = None
        for line in block.split("\n"):
            if not line:
                continue
            if line[0] in " \t" and key:
                record[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip()
                record[key] = value.strip()
        if record:
            yield record


def long_descriptions(translation_texts: Iterable[str]) -> dict[str, str]:
    """Map ``Description-md5`` to the long description from ``Translation-en`` indexes.

    Args:
        translation_texts: The text of each Translation-en index.

    Returns:
        md5 -> raw long description (continuation lines, each starting with a space).
    """
    by_md5: dict[str, str] = {}
    for text in translation_texts:
        for record in parse_stanzas(text):
            description = record.get("Description-en")
            if description is None or "Description-md5" not in record:
                continue
            by_md5[record["Description-md5"]] = description.partition("\n")[2]
    return by_md5


def join_packages(avail_text: str, by_md5: dict[str, str]) -> list[Package]:
    """Pair each available package with its long description.

    Args:
        avail_text: ``apt-cache dumpavail`` output.
        by_md5: From :func:`long_descriptions`.

    Returns:
        The packages that have a long description, in input order.
    """
    packages = []
    for record in parse_stanzas(avail_text):
        name = record.get("Package")
        if not name or "Description" not in record:
            continue
        short, _, long_ = record["Description"].partition("\n")
        if not long_.strip():  # the usual case: only the md5 is inline
            long_ = by_md5.get(record.get("Description-md5", ""), "")
        if not long_.strip():
            continue
        packages.append(
            Package(
                id=name,
                summary=short.strip(),
                raw=long_,
                source=record.get("Source", name).split()[0],
                section=record.get("Section", ""),
            )
        )
    return packages


# ---------------------------------------------------------------------------- cleaning
def clean_long_description(raw: str) -> list[str]:
    """Turn a control-file long description into prose paragraphs.

    Args:
        raw: The continuation lines of a ``Description`` field, each starting with one space.

    Returns:
        The kept paragraphs (each whitespace-normalized), possibly empty.
    """
    # Group lines into blocks: "p" prose, "b" bullet list, "v" verbatim, "sep" for " .".
    # Only prose is kept, but the other kinds still delimit prose paragraphs.
    blocks: list[tuple[str, list[str]]] = []
    for line in raw.split("\n"):
        if not line.strip():
            continue
        body = line[1:] if line.startswith(" ") else line
        last = blocks[-1][0] if blocks else None
        if body.strip() == ".":
            blocks.append(("sep", []))
        elif _BULLET.match(body):
            if last != "b":
                blocks.append(("b", []))
        elif body.startswith((" ", "\t")):
            if last not in ("b", "v"):  # indented text continues a bullet item, else verbatim
                blocks.append(("v", []))
        elif last == "p":
            blocks[-1][1].append(body.strip())
        else:
            blocks.append(("p", [body.strip()]))

    kept = []
    for kind, lines in blocks:
        if kind != "p":
            continue
        text = _WS.sub(" ", " ".join(lines)).strip()
        if text.endswith(":"):
            # "Features include:" introduced a list or code that was dropped
            text = " ".join(split_sentences(text, nfc=False)[:-1])
        if text and any(map(is_prose_sentence, split_sentences(text, nfc=False))):
            kept.append(text)
    return kept


def mostly_latin(text: str, threshold: float = 0.97) -> bool:
    """Tell whether nearly all letters of ``text`` are Latin (below U+0250).

    Args:
        text: Any text.
        threshold: Minimum fraction of Latin letters.

    Returns:
        True if the text has letters and at least ``threshold`` of them are Latin.
    """
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return False
    return sum(ord(ch) < 0x250 for ch in letters) / len(letters) >= threshold


def _norm(text: str) -> str:
    """Dedup key: NFKC, lower case, runs of non-alphanumerics collapsed to one space."""
    return _NON_ALNUM.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def _rank(pkg: Package) -> tuple[bool, int, str]:
    """Sort key of a family representative: smaller is better."""
    return (pkg.id != pkg.source, -len(pkg.document), pkg.id)


def _dedup(packages: Iterable[Package], key: Any) -> list[Package]:
    groups: dict[str, list[Package]] = defaultdict(list)
    for pkg in packages:
        groups[key(pkg)].append(pkg)
    return [min(group, key=_rank) for group in groups.values()]


def split_for(source: str) -> str:
    """Assign a split from a hash of the source package name.

    Args:
        source: Debian source package name.

    Returns:
        ``"test"`` (5 %), ``"valid"`` (5 %) or ``"train"`` (90 %).
    """
    bucket = int(hashlib.sha1(source.encode()).hexdigest(), 16) % 100
    return "test" if bucket < 5 else "valid" if bucket < 10 else "train"


def _remove_boilerplate(packages: list[Package], stats: Counter) -> list[Package]:
    """Delete sentences shared by >= BOILERPLATE_DF documents and re-filter."""
    df: Counter = Counter()
    for pkg in packages:
        df.update(set(pkg.sentences))
    boilerplate = {s for s, n in df.items() if n >= BOILERPLATE_DF}
    stats["boilerplate_sentence_types"] = len(boilerplate)
    kept = []
    for pkg in packages:
        paras = []
        for para in pkg.paras:
            sentences = [s for s in split_sentences(para, nfc=False) if s not in boilerplate]
            if any(map(is_prose_sentence, sentences)):
                paras.append(" ".join(sentences))
        pkg.set_paragraphs(paras)
        if len(pkg.sentences) >= MIN_SENTENCES:
            kept.append(pkg)
    return kept


def build_pairs(
    avail_text: str, translation_texts: Iterable[str], stats: Counter | None = None
) -> list[dict[str, Any]]:
    """Build the pair records from apt metadata.

    Args:
        avail_text: ``apt-cache dumpavail`` output.
        translation_texts: Text of each ``Translation-en`` index.
        stats: Optional counter that receives filtering statistics.

    Returns:
        Records ``{"id", "summary", "document", "source", "section", "n_sentences",
        "n_words", "split"}`` sorted by id.
    """
    stats = Counter() if stats is None else stats
    packages = join_packages(avail_text, long_descriptions(translation_texts))
    stats["with_long_description"] = len(packages)

    cleaned = []
    for pkg in packages:
        if _SKIP_SUMMARY.search(pkg.summary) or _SKIP_LONG.search(pkg.raw[:300]):
            stats["skipped_transitional_dummy"] += 1
            continue
        pkg.set_paragraphs(clean_long_description(pkg.raw))
        if not pkg.document:
            stats["skipped_no_prose"] += 1
        elif not mostly_latin(pkg.document + " " + pkg.summary):
            stats["skipped_non_latin"] += 1
        elif len(pkg.sentences) < MIN_SENTENCES:
            stats["skipped_lt_min_sentences"] += 1
        else:
            cleaned.append(pkg)
    stats["after_filters"] = len(cleaned)

    unique = _dedup(cleaned, lambda p: _norm(p.document))
    stats["after_exact_dedup"] = len(unique)

    def family_key(pkg: Package) -> str:
        first = _norm(pkg.paras[0])
        return first if len(first) >= FAMILY_KEY_MIN_CHARS else _norm(pkg.document)

    unique = _dedup(unique, family_key)
    stats["after_family_dedup"] = len(unique)
    unique = _dedup(_remove_boilerplate(unique, stats), lambda p: _norm(p.document))
    stats["pairs"] = len(unique)
    unique.sort(key=lambda p: p.id)
    return [
        {
            "id": p.id,
            "summary": p.summary,
            "document": p.document,
            "source": p.source,
            "section": p.section,
            "n_sentences": len(p.sentences),
            "n_words": len(p.document.split()),
            "split": split_for(p.source),
        }
        for p in unique
    ]

"""Per-source extractors: unpacked Debian packages -> ``{"id", "title", "paragraphs"}`` docs.

Every extractor takes the unpack root (``<work>/x``, holding one ``<package>/`` tree per
downloaded ``.deb``) and yields documents. Document ids are paths relative to that root (or
``<source>/<key>``), so they are stable across machines. Paragraphs are whitespace-normalized
and, for most sources, only those with at least one sentence-like sentence are kept: the
corpus is for prose, not for code, tables or lists. The extractors of the game and data
packages are in :mod:`.games`; their sources are registered here like the others.
"""

from __future__ import annotations

import glob
import gzip
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from lcm.data.build_corpus import games, rdata, sword
from lcm.data.build_corpus.textutil import normalize_ws, prose_paragraphs

Doc = dict[str, Any]
Extractor = Callable[[Path], Iterator[Doc]]


def _read_text(path: str | Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _sorted_files(root: Path, pattern: str, exclude: str | None = None) -> list[str]:
    """Files under ``root`` matching a recursive glob, sorted as strings (stable ids)."""
    paths = sorted(glob.glob(os.path.join(root, pattern), recursive=True))
    return [p for p in paths if not (exclude and re.search(exclude, p)) and os.path.isfile(p)]


# -------------------------------------------------------------------------------- HTML
class ParagraphHTMLParser(HTMLParser):
    """Collect the text of ``<p>`` (and DocBook ``<div class="para">``) elements.

    Text inside ``pre``, ``script``, ``style``, ``nav``, ``header`` and ``footer`` is skipped,
    as is everything outside paragraphs (headings, lists, tables, code blocks).
    """

    SKIP = frozenset({"pre", "script", "style", "nav", "header", "footer"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.title = ""
        self._buf: list[str] = []
        self._in_p = 0
        self._skip = 0
        self._in_title = False
        self._divs: list[bool] = []  # per open <div>: is it a paragraph div?

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Track paragraph, skipped and title elements."""
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "p" or (tag == "div" and ("class", "para") in attrs):
            self.flush()
            self._in_p += 1
            if tag == "div":
                self._divs.append(True)
        elif tag == "div":
            self._divs.append(False)
        elif tag == "title":
            self._in_title = True
        elif tag == "br" and self._in_p:
            self._buf.append(" ")

    def handle_endtag(self, tag: str) -> None:
        """Close paragraphs, skipped elements and the title."""
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "p" or (tag == "div" and self._divs and self._divs.pop()):
            self.flush()
            self._in_p = max(0, self._in_p - 1)
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        """Buffer paragraph text and the document title."""
        if self._in_title:
            self.title += data
        if self._in_p and not self._skip:
            self._buf.append(data)

    def flush(self) -> None:
        """End the current paragraph, if it has text."""
        text = normalize_ws("".join(self._buf))
        if text:
            self.paragraphs.append(text)
        self._buf = []


def html_paragraphs(markup: str) -> tuple[str, list[str]]:
    """Extract the title and the paragraph texts of an HTML page.

    Args:
        markup: The HTML source.

    Returns:
        ``(title, paragraphs)``, both whitespace-normalized.
    """
    parser = ParagraphHTMLParser()
    parser.feed(markup)
    parser.flush()
    return normalize_ws(parser.title), parser.paragraphs


def html_source(pattern: str, exclude: str | None = None) -> Extractor:
    """Make an extractor for the HTML pages matching ``pattern`` under the unpack root.

    Args:
        pattern: Recursive glob relative to the unpack root, starting with the package.
        exclude: Regex; matching paths (indexes, search pages, assets) are skipped.

    Returns:
        The extractor; one document per page that has prose.
    """

    def extract(root: Path) -> Iterator[Doc]:
        for path in _sorted_files(root, pattern, exclude):
            title, paras = html_paragraphs(_read_text(path))
            paras = prose_paragraphs(paras)
            if paras:
                yield {"id": os.path.relpath(path, root), "title": title, "paragraphs": paras}

    return extract


# The prose books of rust-doc, not the API reference.
RUST_BOOKS = (
    "book", "reference", "rust-by-example", "nomicon", "cargo", "edition-guide",
    "embedded-book", "rustc", "rustdoc", "unstable-book", "style-guide",
)  # fmt: skip


def rust_books(root: Path) -> Iterator[Doc]:
    """Extract the rust-doc books (one doc per page, without the single-page print versions)."""
    for book in RUST_BOOKS:
        pattern = f"rust-doc/usr/share/doc/rust-doc/html/{book}/**/*.html"
        yield from html_source(pattern, r"print\.html")(root)


# ----------------------------------------------------------------------------- R data
_CHAPTER = re.compile(r"^(CHAPTER|Chapter)\s+[\dIVXLC]+\.?|^CHAPTER END$")
# The shared data folder's austen source has 5 novels: Persuasion (24 chapters) is absent
# there although janeaustenr has it. It is left out here too so that a rebuild reproduces
# the shared data exactly (and the novel stays unseen, usable for evaluation).
AUSTEN_EXCLUDED = frozenset({"persuasion"})


def austen(root: Path) -> Iterator[Doc]:
    """Jane Austen's novels (janeaustenr's line vectors), one document per chapter.

    Blank lines separate paragraphs; text before the first chapter heading is dropped;
    the books in ``AUSTEN_EXCLUDED`` are skipped.
    """
    data = rdata.load_lazy(
        root / "r-cran-janeaustenr/usr/lib/R/site-library/janeaustenr/data/Rdata"
    )
    for book, lines in data.items():
        if book in AUSTEN_EXCLUDED:
            continue
        if not all(line is None or isinstance(line, str) for line in lines):
            continue  # not a character vector of lines
        heading: str | None = None
        paras: list[str] = []
        buf: list[str] = []
        number = 0
        for line in [*lines, "CHAPTER END"]:  # sentinel heading flushes the last chapter
            line = (line or "").strip()
            if _CHAPTER.match(line):
                if buf:
                    paras.append(" ".join(buf))
                    buf = []
                if heading is not None and paras:
                    yield {"id": f"austen/{book}/{number}", "title": heading, "paragraphs": paras}
                heading, paras, number = line, [], number + 1
            elif not line:
                if buf:
                    paras.append(" ".join(buf))
                    buf = []
            else:
                buf.append(line)


# ------------------------------------------------------------------------------- SWORD
def sword_source(module_glob: str, chapters: bool = False) -> Extractor:
    """Make an extractor for a SWORD module.

    Args:
        module_glob: Glob (relative to the unpack root) of the module directory.
        chapters: Bible mode: one single-paragraph document per chapter. Otherwise
            (commentaries) one document per entry, one paragraph per prose line.

    Returns:
        The extractor. Repeated entry texts are dropped.
    """

    def extract(root: Path) -> Iterator[Doc]:
        matches = sorted(glob.glob(os.path.join(root, module_glob)))
        if not matches:
            raise FileNotFoundError(f"no SWORD module matches {module_glob} under {root}")
        module = matches[0]
        name = os.path.basename(module)
        seen: set[str] = set()
        chapter: list[str] = []
        count = 0
        for _, index, raw in sword.iter_entries(module):
            if chapters and chapter and re.search(r"<chapter\b[^>]*sID=", raw):
                count += 1
                yield {"id": f"{name}/{count}", "title": "", "paragraphs": [" ".join(chapter)]}
                chapter = []
            text = sword.strip_markup(raw)
            if not text or text in seen:
                continue
            seen.add(text)
            if chapters:
                chapter.append(text.replace("\n", " "))
            else:
                paras = prose_paragraphs(text.split("\n"))
                if paras:
                    yield {"id": f"{name}/{index}", "title": "", "paragraphs": paras}
        if chapter:
            yield {"id": f"{name}/{count + 1}", "title": "", "paragraphs": [" ".join(chapter)]}

    return extract


# ----------------------------------------------------------------------------- WordNet
def wordnet(root: Path) -> Iterator[Doc]:
    """WordNet 3.0 synsets: glosses split into ``definitions`` and quoted ``examples``.

    These docs keep ``paragraphs`` empty and carry the two extra lists instead, because a
    gloss is a fragment, not a paragraph.
    """
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / f"wordnet-base/usr/share/wordnet/data.{pos}"
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:  # license header / no gloss
                    continue
                head, gloss = line.split("|", 1)
                fields = head.split()
                parts = [p.strip() for p in gloss.strip().split(";")]
                yield {
                    "id": f"wn/{pos}/{fields[0]}",
                    "title": fields[4].replace("_", " "),
                    "paragraphs": [],
                    "definitions": [p for p in parts if p and not p.startswith('"')],
                    "examples": [p.strip('"') for p in parts if p.startswith('"')],
                }


# ------------------------------------------------------------------------ dictd (.dz)
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64_number(text: str) -> int:
    """Decode a dictd index number (base 64, most significant digit first)."""
    n = 0
    for ch in text:
        n = n * 64 + _B64.index(ch)
    return n


def dict_articles(root: Path, name: str) -> Iterator[tuple[str, str]]:
    """Yield ``(headword, article)`` from a dictd database, each article once.

    Args:
        root: Unpack root.
        name: Database name (``gcide``, ``devil``, ``jargon``, ``foldoc``).

    Yields:
        Headword and the raw article text (its first line repeats the headword).
    """
    base = root / f"dict-{name}/usr/share/dictd/{name}"
    data = gzip.decompress(Path(f"{base}.dict.dz").read_bytes())  # dictzip is gzip
    seen: set[tuple[int, int]] = set()
    with open(f"{base}.index", encoding="utf-8", errors="replace") as f:
        for line in f:
            word, offset, length = line.rstrip("\n").split("\t")[:3]
            if word.startswith("00"):  # 00databaseinfo, 00databaseurl, ...
                continue
            key = (_b64_number(offset), _b64_number(length))
            if key in seen:  # several headwords can share one article
                continue
            seen.add(key)
            yield word, data[key[0] : key[0] + key[1]].decode("utf-8", "replace")


_XREF = re.compile(r"\{([^{}]*)\}")
_DICT_SOURCE_TAG = re.compile(
    r"\[(1913 Webster|WordNet 1.5|PJC|Century Dict\.|[A-Z][A-Za-z. ]{0,20})\]"
)
_FOLDOC_CATEGORY = re.compile(r"<[a-z]+>")


def clean_dict_text(text: str) -> str:
    """Remove dictd markup: ``{cross references}``, ``[source tags]``, ``<categories>``."""
    text = _XREF.sub(r"\1", text)
    text = _DICT_SOURCE_TAG.sub(" ", text)
    return _FOLDOC_CATEGORY.sub(" ", text)


def dict_source(name: str) -> Extractor:
    """Make an extractor for a dictd database: one document per article.

    Args:
        name: Database name.

    Returns:
        The extractor; articles become blank-line-separated prose paragraphs.
    """

    def extract(root: Path) -> Iterator[Doc]:
        for word, article in dict_articles(root, name):
            body = article.split("\n", 1)[1] if "\n" in article else article
            paras = [normalize_ws(clean_dict_text(p)) for p in re.split(r"\n\s*\n", body)]
            paras = prose_paragraphs(p for p in paras if p)
            if paras:
                yield {"id": f"{name}/{word}", "title": word, "paragraphs": paras}

    return extract


_ATTRIBUTION = re.compile(r"(?:^|\s{2,})--\s?([A-Z][^\n]{0,60})$")


def gcide_quotes(root: Path) -> Iterator[Doc]:
    """Literary citations in GCIDE: deeply indented lines closed by ``--Author.``.

    The title is the attribution; each quotation (>= 4 words) is kept once.
    """
    seen: set[str] = set()
    for word, article in dict_articles(root, "gcide"):
        buf: list[str] = []
        for line in article.split("\n"):
            stripped = line.strip()
            indent = len(line) - len(line.lstrip(" "))
            m = _ATTRIBUTION.search(stripped) if indent >= 6 else None
            if m:
                head = stripped[: m.start()].strip() if m.start() > 0 else ""
                if head:
                    buf.append(head)
                quote = normalize_ws(clean_dict_text(" ".join(buf)))
                buf = []
                if len(quote.split()) >= 4 and quote not in seen:
                    seen.add(quote)
                    yield {
                        "id": f"gcide-quote/{word}/{len(seen)}",
                        "title": m.group(1).strip(),
                        "paragraphs": [quote],
                    }
            elif indent >= 10 and stripped and not stripped.startswith("["):
                buf.append(stripped)
            else:
                buf = []


# ---------------------------------------------------------------------------- fortunes
_SKIPPED_FORTUNES = ("art", "ascii-art")  # pictures, not text


def fortunes(root: Path) -> Iterator[Doc]:
    """Fortune cookies (fortunes + fortunes-min), one document per cookie.

    Attribution lines (``-- Author``) are dropped; the title is the fortune file name.
    """
    for path in sorted(glob.glob(os.path.join(root, "fortunes*/usr/share/games/fortunes/*"))):
        base = os.path.basename(path)
        if (
            os.path.splitext(path)[1] in (".dat", ".u8")
            or "mario" in path
            or os.path.isdir(path)
            or base in _SKIPPED_FORTUNES
        ):
            continue
        for i, cookie in enumerate(_read_text(path).split("\n%\n")):
            lines = [ln for ln in cookie.split("\n") if not re.match(r"^\s*--\s", ln)]
            para = normalize_ws(" ".join(lines))
            if para:
                yield {"id": f"fortune/{base}/{i}", "title": base, "paragraphs": [para]}


# ------------------------------------------------------------------------ Perl POD, man
_POD_FORMAT = re.compile(r"[BCIFLSEXZ]<+\s*(.*?)\s*>+")


def perl_pod(root: Path) -> Iterator[Doc]:
    """Perl's POD documentation: ordinary paragraphs only (no commands, no verbatim)."""
    for path in _sorted_files(root, "perl-doc/**/*.pod"):
        paras = [
            normalize_ws(_POD_FORMAT.sub(r"\1", block))
            for block in re.split(r"\n\s*\n", _read_text(path))
            if block.strip() and not block.startswith(("=", " ", "\t"))
        ]
        paras = prose_paragraphs(paras)
        if paras:
            yield {
                "id": os.path.relpath(path, root),
                "title": os.path.basename(path),
                "paragraphs": paras,
            }


_MAN_BREAK = re.compile(r"^\.(PP|P|LP|SH|SS|TP|IP|HP|RS|RE|nf|EX|in|sp|br)\b")
_MAN_FONT = re.compile(r"^\.(B|I|BR|IR|RB|RI|BI|IB|SM)\s+(.*)")
_MAN_ESCAPES = re.compile(r"\\f[BIRP]|\\\(.{2}|\\[&e-]|\\")


def man_paragraphs(source: str) -> list[str]:
    """Split roff man-page source into plain-text paragraphs.

    Paragraph and section macros end a paragraph; font macros contribute their text; other
    requests are ignored; font changes and escapes are stripped.

    Args:
        source: The man page's roff source.

    Returns:
        Whitespace-normalized paragraphs (not yet filtered for prose).
    """
    paras: list[str] = []
    buf: list[str] = []
    for line in source.split("\n"):
        if line.startswith((".", "'")):
            if _MAN_BREAK.match(line) or line.strip() == ".":
                if buf:
                    paras.append(" ".join(buf))
                    buf = []
                continue
            m = _MAN_FONT.match(line)
            if m:
                buf.append(m.group(2).replace('"', ""))
            continue
        if line.strip():
            buf.append(line.strip())
    if buf:
        paras.append(" ".join(buf))
    return [normalize_ws(_MAN_ESCAPES.sub("", p)) for p in paras]


def manpages(root: Path) -> Iterator[Doc]:
    """Extract the Linux man-pages project (package ``manpages``), one document per page."""
    for path in sorted(glob.glob(os.path.join(root, "manpages/usr/share/man/man*/*.gz"))):
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
            paras = prose_paragraphs(man_paragraphs(f.read()))
        if paras:
            yield {
                "id": os.path.relpath(path, root),
                "title": os.path.basename(path),
                "paragraphs": paras,
            }


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Source:
    """A corpus source: where it comes from and how to extract it.

    ``heldout``: a test-only source, never to be trained on (the codec's unseen-domain test);
    the held-out sources are exactly :data:`lcm.text.heldout.HELDOUT_SOURCES`.
    """

    name: str
    packages: tuple[str, ...]
    extract: Extractor
    license: str
    heldout: bool = False


def _html(name: str, package: str, pattern: str, license_: str, exclude: str | None = None):
    return Source(name, (package,), html_source(f"{package}/{pattern}", exclude), license_)


_SPHINX_EXCLUDE = r"/_static/|genindex|search\.html"
_SWORD_COMMENTS = "usr/share/sword/modules/comments/zcom/*"

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("austen", ("r-cran-janeaustenr",), austen, "public domain (janeaustenr: MIT)"),
        Source(
            "bible_web",
            ("sword-text-web",),
            sword_source("sword-text-web/usr/share/sword/modules/texts/ztext/*", chapters=True),
            "public domain",
        ),
        Source(
            "comm_mhcc",
            ("sword-comm-mhcc",),
            sword_source(f"sword-comm-mhcc/{_SWORD_COMMENTS}"),
            "public domain",
        ),
        Source(
            "comm_tdavid",
            ("sword-comm-tdavid",),
            sword_source(f"sword-comm-tdavid/{_SWORD_COMMENTS}"),
            "public domain",
        ),
        Source(
            "comm_scofield",
            ("sword-comm-scofield",),
            sword_source(f"sword-comm-scofield/{_SWORD_COMMENTS}"),
            "public domain",
        ),
        Source("fortunes", ("fortunes", "fortunes-min"), fortunes, "BSD + assorted"),
        Source("gcide_quotes", ("dict-gcide",), gcide_quotes, "GPL-2+ (quotations PD)"),
        Source("gcide_defs", ("dict-gcide",), dict_source("gcide"), "GPL-2+"),
        Source("wordnet", ("wordnet-base",), wordnet, "WordNet 3.0 license"),
        Source("devil", ("dict-devil",), dict_source("devil"), "public domain"),
        Source("jargon", ("dict-jargon",), dict_source("jargon"), "public domain"),
        Source("foldoc", ("dict-foldoc",), dict_source("foldoc"), "GFDL-1.1+"),
        _html(
            "linux_doc",
            "linux-doc-6.1",
            "usr/share/doc/linux-doc-6.1/html/**/*.html",
            "GPL-2",
            _SPHINX_EXCLUDE,
        ),
        _html(
            "python_doc",
            "python3.11-doc",
            "usr/share/doc/python3.11/html/**/*.html",
            "PSF-2.0",
            r"/_static/|genindex|py-modindex|search\.html",
        ),
        Source("perl_doc", ("perl-doc",), perl_pod, "Artistic / GPL"),
        _html(
            "postgresql_doc",
            "postgresql-doc-15",
            "usr/share/doc/postgresql-doc-15/html/*.html",
            "PostgreSQL",
        ),
        _html(
            "django_doc",
            "python-django-doc",
            "usr/share/doc/python-django-doc/html/**/*.html",
            "BSD-3-clause",
            r"/_static/|_modules|genindex",
        ),
        _html("git_doc", "git-doc", "usr/share/doc/git-doc/**/*.html", "GPL-2"),
        Source("rust_books", ("rust-doc",), rust_books, "MIT / Apache-2.0"),
        Source("manpages", ("manpages",), manpages, "various free"),
        _html(
            "debian_handbook",
            "debian-handbook",
            "usr/share/doc/debian-handbook/html/en-US/*.html",
            "GPL-2+ / CC-BY-SA-3.0",
        ),
        _html(
            "debian_policy",
            "debian-policy",
            "usr/share/doc/debian-policy/**/*.html",
            "GPL-2+",
        ),
        _html(
            "debian_reference",
            "debian-reference-en",
            "usr/share/debian-reference/*.en.html",
            "GPL-2+",
        ),
        _html("debian_faq", "debian-faq", "usr/share/doc/debian/FAQ/*.html", "GPL-2+"),
        _html(
            "debian_history",
            "debian-history",
            "usr/share/doc/debian-history/docs/*.en.html",
            "GPL-2+",
        ),
        _html(
            "developers_reference",
            "developers-reference",
            "usr/share/developers-reference/*.html",
            "MIT-like",
        ),
        # Issue 21: game and data packages (see games.py); the versions are bookworm's.
        # endless-sky-data 0.9.8-1.2
        Source("endless_sky", (games.ENDLESS_SKY_PACKAGE,), games.endless_sky, "GPL-3+ (text)"),
        # cataclysm-dda-data 0.F-3-9
        Source("cataclysm", (games.CATACLYSM_PACKAGE,), games.cataclysm, "CC-BY-SA-3.0"),
        # naev-data 0.8.2-1
        Source("naev", (games.NAEV_PACKAGE,), games.naev, "GPL-3+"),
        # freedroidrpg-data 1.0-1
        Source("freedroidrpg", (games.FREEDROIDRPG_PACKAGE,), games.freedroidrpg, "GPL-2+"),
        # stellarium-data 0.22.2-1; each sky culture's own licence is kept per document
        Source(
            "stellarium",
            (games.STELLARIUM_PACKAGE,),
            games.stellarium,
            "GPL-2+ / CC BY-SA per culture (NC/ND skipped)",
        ),
        # wesnoth-1.16-{16 campaigns} 1:1.16.9-1; held out (narrative and dialogue)
        Source("wesnoth", games.WESNOTH_PACKAGES, games.wesnoth, "GPL-2+", heldout=True),
        # freeciv-data 3.0.6-1+deb12u1; held out (encyclopedic)
        Source(
            "freeciv_nations",
            (games.FREECIV_PACKAGE,),
            games.freeciv_nations,
            "GPL-2+",
            heldout=True,
        ),
    )
}

"""Dependency-free text helpers shared by the corpus extractors and the pair builder.

The sentence splitter here is only a *filter* heuristic (which paragraphs contain prose,
which sentences are boilerplate); the project's real segmenter lives elsewhere. It must stay
byte-for-byte stable, because changing it changes which paragraphs are kept and therefore the
rebuilt data.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Tokens that do not end a sentence even when a capital follows. "etc", "Inc" and "A.D." are
# left out on purpose: they end sentences more often than not.
_ABBREV = frozenset(
    {
        "e.g", "i.e", "vs", "cf", "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "no",
        "nos", "fig", "figs", "vol", "vols", "ed", "eds", "dept", "approx", "al", "viz", "esp",
        "ca", "c", "ibid", "resp", "u.s", "u.k", "ph.d", "v", "n.b", "jan", "feb", "mar",
        "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "incl", "ver", "eq",
        "gen", "col", "lt", "capt", "rev", "hon", "gov", "sen", "rep", "mt", "ft", "pp", "p",
        "ch", "sec", "art", "op", "cit",
    }
)  # fmt: skip

# Sentence-final punctuation, optional closers, whitespace, then a plausible sentence start.
_BOUNDARY = re.compile(r"([.!?]+[\"'\u201d\u2019)\]]*)(\s+)(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_WORD_SPLIT = re.compile(r"[\s(\[\"']")
_SINGLE_LETTER = re.compile(r"[a-z]")
_TERMINAL = re.compile(r"[.!?][\"'\u201d\u2019)\]]*$")
_STARTS_LIKE_SENTENCE = re.compile(r"[\"'\u201c\u2018(\[]?[A-Z0-9]")
_WS = re.compile(r"\s+")


def normalize_ws(text: str) -> str:
    """NFC-normalize ``text`` and collapse every whitespace run to one space.

    Args:
        text: Any string.

    Returns:
        The normalized, stripped string.
    """
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def split_sentences(text: str, *, nfc: bool = True) -> list[str]:
    """Split English text into sentences with a small abbreviation-aware heuristic.

    Breaks after ``.``/``!``/``?`` (plus closing quotes or brackets) when the next token
    starts like a sentence, but not after common abbreviations or single-letter initials.

    Args:
        text: Text to split; whitespace is normalized first.
        nfc: Apply NFC normalization first (the corpus extractors do, the Debian pair
            builder does not; both behaviours are kept so the outputs stay reproducible).

    Returns:
        Non-empty sentences in order.
    """
    text = normalize_ws(text) if nfc else _WS.sub(" ", text).strip()
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        word = _WORD_SPLIT.split(text[start : m.start(1) + 1])[-1].lower().rstrip(".")
        if m.group(1).startswith(".") and (word in _ABBREV or _SINGLE_LETTER.fullmatch(word)):
            continue
        out.append(text[start : m.end(1)].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if s]


def _mostly_letters(sentence: str) -> bool:
    compact = sentence.replace(" ", "")
    return sum(ch.isalpha() for ch in compact) >= 0.6 * len(compact)


def is_sentence_like(sentence: str, min_words: int = 3) -> bool:
    """Tell whether ``sentence`` looks like a full prose sentence.

    It must start with a capital, digit or opening quote, end with terminal punctuation,
    have at least ``min_words`` words and consist mostly of letters.

    Args:
        sentence: One sentence.
        min_words: Minimum number of whitespace-separated words.

    Returns:
        True if the sentence looks like prose.
    """
    if len(sentence.split()) < min_words:
        return False
    if not _STARTS_LIKE_SENTENCE.match(sentence) or not _TERMINAL.search(sentence):
        return False
    return _mostly_letters(sentence)


def is_prose_sentence(sentence: str) -> bool:
    """Looser test used for package descriptions: no constraint on the first character.

    Args:
        sentence: One sentence.

    Returns:
        True if it has at least 3 words, ends in ``.``/``!``/``?`` and is mostly letters.
    """
    if len(sentence.split()) < 3 or not _TERMINAL.search(sentence):
        return False
    return _mostly_letters(sentence)


def prose_paragraphs(paragraphs: Iterable[str], min_good: int = 1) -> list[str]:
    """Keep the paragraphs that contain at least ``min_good`` sentence-like sentences.

    Args:
        paragraphs: Candidate paragraphs.
        min_good: How many sentence-like sentences a paragraph needs.

    Returns:
        The kept paragraphs, in order.
    """
    return [p for p in paragraphs if sum(map(is_sentence_like, split_sentences(p))) >= min_good]

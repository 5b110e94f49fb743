"""Rule-based English sentence segmentation with a hard character budget.

The LCM encodes every sentence into one concept vector, and the encoder has a fixed input
budget (the LCM paper caps sentences at about 200-256 characters). This module therefore does
two things:

1. Find sentence boundaries with a fast, regex-driven rule set: candidate boundaries are
   sentence-final punctuation (``. ! ? ...``) followed by whitespace or a dash, and each
   candidate is accepted or rejected by looking at the word before it (abbreviation, initial,
   acronym, list number) and the word after it (lower case, a frequent sentence opener).
2. Cap every sentence at ``max_chars`` by re-splitting long ones at the best clause boundary
   (``; : -- ,``, a conjunction, any whitespace, and only as a last resort a hard cut).

Everything is lossless up to whitespace: joining the returned sentences reproduces the
NFC-normalized input with whitespace runs collapsed (bullet markers are kept in the text).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["segment_document", "split_paragraphs", "split_sentences"]

# --- sentence boundary rules -------------------------------------------------------------------

# Abbreviations that (almost) never end a sentence: titles precede a name, and the Latin
# connectives are always followed by more of the same sentence ("e.g. The Hobbit").
_NEVER_SPLIT = frozenset(
    """mr mrs ms messrs mme mlle dr prof rev fr hon gen capt col lt sgt cmdr adm sen rep gov
    pres supt e.g i.e cf vs viz""".split()
)

# Abbreviations that may end a sentence. After one of these (or an initial, or an acronym such
# as "U.S.") we only split when the next word is a frequent sentence opener, because a capital
# alone is ambiguous ("St. Paul" vs "Main St. The shop", "No. 5" vs "said no. Then").
_CONDITIONAL = frozenset(
    """st jr sr inc ltd co corp bros llc plc no nos fig figs vol vols p pp ch chap sec sect eq eqs
    art op ed eds ibid al approx ca esp incl resp dept univ assn est jan feb mar apr jun jul aug
    sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun ft mt ave blvd rd hwy
    min max ref refs ver vers cap pt pts mss ms ext tel""".split()
)

# Frequent sentence openers (capitalized). Words that are also common names ("Will", "May",
# "Mark", "Grace") are left out on purpose: "J. Will Smith" must not split.
_STARTERS = frozenset(
    """A An The This That These Those There Then Thus Hence Here It Its I He She We You They Him
    Her His Our Their My Your Me Us Them In On At By For From With Without To Of Into Onto Under
    Over After Before Since While When Where Whereas Why What Which Who Whom Whose How If Unless
    Until Although Though But And Or Nor So Yet However Moreover Furthermore Therefore Also Now
    Finally First Second Third Next Last Some Many Most All Each Every No Not None Both Such
    Only Even Still Once One Another Other Others Because As Let Do Does Did Is Are Was Were Be
    Has Have Had Can Could Would Should Must Shall See Note Use Please Yes""".split()
)

_MAX_WORD = 40  # look-back limit for the word before a period (abbreviations are short)
_OPENERS = "\"'\u201c\u2018([{\u00ab"
_CLOSERS = "\"'\u201d\u2019)]}\u00bb"

# A candidate boundary: terminator run, optional closing quotes/brackets, then whitespace or a
# dash glued to the terminator (Austen writes "consciousness.--Miss Taylor married."). The
# lookahead captures the first visible character of what follows.
_CANDIDATE = re.compile(
    r"([.!?\u203d\u2026]+)([\"'\u201d\u2019)\]}\u00bb]*)(\s+|(?:--|\u2014)\s*)(?=(\S))"
)
_NEXT_WORD = re.compile(r"[\"'\u201c\u2018(\[{\u00ab]*([A-Za-z][A-Za-z'\u2019]*)(\.?)")
_ACRONYM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # "U.S", "D.C", "a.m", "Ph.D" after rstrip
_LIST_MARK = re.compile(r"\(?(?:\d{1,3}|[A-Za-z]|[ivxlcdm]{1,4}|[IVXLCDM]{1,4})")

# --- paragraph / bullet structure --------------------------------------------------------------

_BLANK_LINE = re.compile(r"\n[ \t\f\v\u00a0]*(?:\n|$)")
# A bullet line: dash/star/bullet glyph, or "1." "1)" "(1)" "a)" "(a)" "iv)" "(iv)", then space.
_BULLET = re.compile(
    r"[ \t]*(?:[-*+\u2022\u2023\u25e6\u25aa\u25b8\u25ba\u2013\u2043]"
    r"|\(?\d{1,3}[.)]|\(?[A-Za-z]\)|\([ivxIVX]{1,4}\)|[ivx]{1,4}\))[ \t]+\S"
)

# --- clause boundaries for re-splitting over-long sentences, strongest first ------------------
# Each match's end is the split position; whitespace around it is dropped.
_CLAUSE_LEVELS = (
    # a terminator the sentence rules refused (abbreviation, lowercase continuation)
    re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*\s"),
    # semicolon, colon, spaced or glued dashes
    re.compile(r"[;:][\"'\u201d\u2019)\]]*\s|\s(?:--|\u2014|\u2013)\s|(?<=\w)(?:--|\u2014)(?=\w)"),
    # comma, closing bracket
    re.compile(r",[\"'\u201d\u2019)\]]*\s|\)\s"),
    # before a coordinating/subordinating conjunction or relative pronoun
    re.compile(
        r"\s(?=(?:and|but|or|nor|yet|so|because|which|who|whom|whose|where|when|while|"
        r"whereas|although|though|unless|since|until|if|that)\s)"
    ),
    # any whitespace
    re.compile(r"\s"),
)


def split_paragraphs(text: str) -> list[str]:
    """Split text into blank-line separated paragraphs.

    Line breaks inside a paragraph are kept (``split_sentences`` needs them to find bullet
    lines); surrounding whitespace is stripped and empty paragraphs are dropped.

    Args:
        text: Raw text; ``\\r\\n`` and ``\\r`` line endings are accepted.

    Returns:
        The non-empty paragraphs in order.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [p.strip() for p in _BLANK_LINE.split(text) if p.strip()]


def _blocks(text: str) -> list[str]:
    """Split text into units that must not share a sentence: paragraphs and bullet items."""
    blocks: list[str] = []
    cur: list[str] = []
    in_bullet = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:  # blank line: paragraph break
            if cur:
                blocks.append(" ".join(cur))
            cur, in_bullet = [], False
        elif _BULLET.match(line):
            if cur:
                blocks.append(" ".join(cur))
            cur, in_bullet = [stripped], True
        elif (
            in_bullet
            and not line[:1].isspace()
            and (stripped[0].isupper() or stripped[0] in _OPENERS)
        ):
            # An unindented, capitalized line after a bullet starts new prose; indented or
            # lowercase lines are the bullet's wrapped continuation.
            if cur:
                blocks.append(" ".join(cur))
            cur, in_bullet = [stripped], False
        else:
            cur.append(stripped)
    if cur:
        blocks.append(" ".join(cur))
    return blocks


def _is_boundary(text: str, m: re.Match[str], sent_start: int) -> bool:
    """Decide whether candidate ``m`` (see ``_CANDIDATE``) ends a sentence."""
    term = m.group(1)
    nxt = m.group(4)
    if nxt in _OPENERS:  # look through an opening quote/bracket
        j = m.end()
        while j < len(text) and text[j] in _OPENERS:
            j += 1
        nxt = text[j] if j < len(text) else ""
    if not nxt or nxt.islower():
        # "Is it?" she asked. / etc. and so on / ... and then: never before lower case.
        return False
    if term != ".":
        # ! ? ?! and ellipses end a sentence before anything that is not lower case.
        return True

    # A single period: look at the word carrying it. Bounded look-back keeps a long run of
    # candidates without spaces ("A.--B.--C.--...") linear instead of quadratic.
    lo = max(sent_start, m.start() - _MAX_WORD)
    ws = text.rfind(" ", lo, m.start())
    first_token = ws < 0 and lo == sent_start
    word = text[(ws + 1 if ws >= 0 else lo) : m.start()]
    if "--" in word or "\u2014" in word:
        word = re.split(r"--|\u2014", word)[-1]
    word = word.lstrip(_OPENERS).rstrip(_CLOSERS)
    if not word:
        return True
    low = word.lower()
    if low in _NEVER_SPLIT:
        return False
    if first_token and len(word) <= 4 and _LIST_MARK.fullmatch(word):
        # "1. Introduction", "b. Second option": a list number opening the sentence.
        return False
    if low in _CONDITIONAL or (len(word) == 1 and word.isalpha()) or _ACRONYM.fullmatch(word):
        # Abbreviation, initial or acronym: split only before a frequent sentence opener that
        # is not itself an initial ("J. I. Smith" has "I." next, not the pronoun "I").
        nm = _NEXT_WORD.match(text, m.end())
        if nm is None:
            return False
        nword, dot = nm.groups()
        return nword in _STARTERS and not (dot and len(nword) == 1)
    return True


def _split_block(block: str) -> list[str]:
    """Split one whitespace-normalized block into sentences (no length cap)."""
    out: list[str] = []
    start = 0
    for m in _CANDIDATE.finditer(block):
        if m.end() <= start:
            continue
        if _is_boundary(block, m, start):
            # Keep closers and a glued dash with the finished sentence; drop the whitespace.
            end = m.end(3)
            sent = block[start:end].strip()
            if sent:
                out.append(sent)
            start = end
    tail = block[start:].strip()
    if tail:
        out.append(tail)
    return out


def _hard_cut(s: str, pos: int) -> int:
    """Move a hard cut position left so that it does not separate a combining mark."""
    p = pos
    while p > 1 and unicodedata.combining(s[p]):
        p -= 1
    return p if p > 0 else pos


# Cost model of the re-splitter (see ``_dp_split``): one unit per piece, a boundary cost per
# clause level (sentence-ish, ; : --, comma, conjunction), a higher cost per whitespace split
# inside a clause, a penalty for fragments shorter than a quarter of the budget, and a
# sub-unit squared length term that breaks ties towards balanced pieces.
_PIECE_COST = 3.0
_LEVEL_COST = (0.0, 1.0, 2.0, 3.0)
_WS_SPLIT_COST = 8.0
_SHORT_COST = 4.0
_DP_MAX_BUDGETS = 8  # longer pieces are bisected first so the DP stays small


def _piece_cost(length: int, max_chars: int, min_len: int) -> float:
    """Cost of one clause-delimited stretch; over-long ones count as ``k`` even pieces."""
    if length <= max_chars:
        c = _PIECE_COST + (length / max_chars) ** 2
        if length < min_len:
            c += _SHORT_COST * (min_len - length) / min_len
        return c
    k = -(-length // max_chars)
    return k * _PIECE_COST + (k - 1) * _WS_SPLIT_COST + k * (length / k / max_chars) ** 2


def _even_split(s: str, max_chars: int) -> list[str]:
    """Cut ``s`` into about ``ceil(len/max_chars)`` even pieces at spaces (hard cuts if none)."""
    out: list[str] = []
    stack = [s]
    while stack:
        s = stack.pop()
        n = len(s)
        if n <= max_chars:
            if s:
                out.append(s)
            continue
        k = -(-n // max_chars)
        k_left = k // 2
        target = n * k_left // k
        # Cut positions that let each side fit its share of the k pieces.
        lo, hi = max(1, n - (k - k_left) * max_chars), min(n - 1, k_left * max_chars)
        a = s.rfind(" ", lo, target + 1)
        b = s.find(" ", target, hi + 1)
        if a < 0 and b < 0:
            # No space where the quota wants one: any space beats cutting a word (the sides
            # are split further as needed); a hard cut only when there is none at all.
            a, b = s.rfind(" ", 0, target + 1), s.find(" ", target)
        if a < 0 and b < 0:
            cut = _hard_cut(s, min(max(target, lo), hi))
        elif a < 0 or (b >= 0 and b - target < target - a):
            cut = b
        else:
            cut = a
        left, right = s[:cut].rstrip(), s[cut:].lstrip()
        # LIFO stack: push the right part first so pieces come out in text order.
        if right:
            stack.append(right)
        if left:
            stack.append(left)
    return out


def _dp_split(s: str, max_chars: int) -> list[str]:
    """Split ``s`` (whitespace-normalized) into pieces ``<= max_chars`` at minimal total cost.

    Dynamic programming over clause boundaries; a stretch between two chosen boundaries that
    is still too long is cut evenly at spaces (``_even_split``). So a clause boundary beats a
    whitespace split even at the price of one more piece, tiny fragments are avoided, and
    among equal choices the pieces come out balanced.
    """
    n = len(s)
    cand: dict[int, float] = {}
    for level, pattern in enumerate(_CLAUSE_LEVELS[:-1]):  # all but bare whitespace
        cost = _LEVEL_COST[level]
        for m in pattern.finditer(s):
            p = m.end()
            if 0 < p < n and cost < cand.get(p, _WS_SPLIT_COST):
                cand[p] = cost
    bounds = [0, *sorted(cand), n]
    costs = [0.0, *(cand[p] for p in bounds[1:-1]), 0.0]
    min_len = max(1, max_chars // 4)
    inf = float("inf")
    best = [inf] * len(bounds)
    back = [0] * len(bounds)
    best[0] = 0.0
    for i in range(1, len(bounds)):
        bi = bounds[i]
        trail = s[bi - 1] == " "
        for j in range(i - 1, -1, -1):
            bj = bounds[j]
            length = bi - bj - trail - (s[bj] == " ")
            if length > 2 * max_chars and j < i - 1:
                break  # longer stretches are never better than using a boundary inside them
            if length <= 0:
                continue
            c = best[j] + costs[i] + _piece_cost(length, max_chars, min_len)
            if c < best[i]:
                best[i], back[i] = c, j
    pieces: list[str] = []
    i = len(bounds) - 1
    while i > 0:
        j = back[i]
        piece = s[bounds[j] : bounds[i]].strip()
        if len(piece) > max_chars:
            pieces.extend(reversed(_even_split(piece, max_chars)))
        elif piece:
            pieces.append(piece)
        i = j
    pieces.reverse()
    return pieces


def _cap(sentence: str, max_chars: int) -> list[str]:
    """Re-split ``sentence`` into pieces of at most ``max_chars`` characters.

    Sentences up to ``_DP_MAX_BUDGETS * max_chars`` go to the optimal splitter ``_dp_split``.
    Longer ones (a 1 MB "sentence") are bisected at the strongest clause boundary within one
    budget of the middle, recursively, which keeps the work O(n log n) with small constants.
    """
    if len(sentence) <= _DP_MAX_BUDGETS * max_chars and " " in sentence:
        return _dp_split(sentence, max_chars)
    out: list[str] = []
    stack = [sentence]
    while stack:
        s = stack.pop()
        n = len(s)
        if n <= max_chars:
            if s:
                out.append(s)
            continue
        if " " not in s:
            # No whitespace at all (a giant token): fixed-size hard cuts, no search needed.
            # (Blocks are whitespace-normalized, so " " is the only whitespace left.)
            out.extend(s[i : i + max_chars] for i in range(0, n, max_chars))
            continue
        # Huge run-on text: bisect all the way down (the DP is quadratic in dense boundaries).
        mid = n // 2
        if n <= 2 * max_chars:  # any cut in [n - max, max] makes both halves fit
            lo, hi = n - max_chars, max_chars + 1
        else:
            lo, hi = max(1, mid - max_chars // 2), mid + max_chars // 2 + 1
        cut = -1
        for pattern in _CLAUSE_LEVELS:
            best_d = n
            for m in pattern.finditer(s, lo, hi):
                d = abs(m.end() - mid)
                if d < best_d:
                    cut, best_d = m.end(), d
                elif d > best_d:
                    break  # past the middle: positions only move away from it
            if cut > 0:
                break
        if cut <= 0:
            cut = _hard_cut(s, mid)
        left, right = s[:cut].rstrip(), s[cut:].lstrip()
        # LIFO stack: push the right half first so pieces come out in text order.
        if right:
            stack.append(right)
        if left:
            stack.append(left)
    return out


def split_sentences(text: str, max_chars: int = 256) -> list[str]:
    """Split a paragraph (or any text) into sentences of at most ``max_chars`` characters.

    Handles abbreviations (``Dr.``, ``e.g.``, ``U.S.``), decimals and versions (``3.14``,
    ``v2.0``), initials (``J. R. R. Tolkien``), quotes (``"Is it?" she asked.``), ellipses,
    URLs and file names (``example.com``, ``setup.py``). Blank lines are paragraph breaks and
    bullet lines (starting with ``-``, ``*``, ``•``, ``1.``, ``a)`` ...) start a new sentence;
    other newlines are plain whitespace. Sentences longer than ``max_chars`` are re-split at
    clause boundaries (``; : -- ,``, before ``and``/``but``/``which`` ...), then at whitespace,
    and as a last resort hard-cut.

    Args:
        text: The text to split.
        max_chars: Maximum length of every returned sentence, in characters (>= 1).

    Returns:
        Non-empty, NFC-normalized sentences with single spaces, each ``<= max_chars`` long.

    Raises:
        ValueError: If ``max_chars < 1``.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    if not text:
        return []
    text = unicodedata.normalize("NFC", text)
    if "\n" in text or "\r" in text or "\u2028" in text or "\u2029" in text:
        blocks = _blocks(text)
    else:
        blocks = [text]
    out: list[str] = []
    for block in blocks:
        block = " ".join(block.split())  # str.split() is several times faster than re.sub
        if not block:
            continue
        for sent in _split_block(block):
            if len(sent) <= max_chars:
                out.append(sent)
            else:
                out.extend(_cap(sent, max_chars))
    return out


def segment_document(paragraphs: Iterable[str], max_chars: int = 256) -> list[str]:
    """Split a document given as paragraphs into one flat list of sentences.

    A paragraph break is always a sentence break.

    Args:
        paragraphs: The document's paragraphs.
        max_chars: Maximum length of every sentence (see ``split_sentences``).

    Returns:
        All sentences of all paragraphs, in order.
    """
    out: list[str] = []
    for para in paragraphs:
        out.extend(split_sentences(para, max_chars))
    return out


def text_sentences(text: str, max_chars: int = 256) -> list[str]:
    """The sentences of a raw text: paragraphs at blank lines, then sentences within them.

    What the data pipeline stores for a document, so the inference library and the evaluation
    harness see the same sentences as training did.
    """
    return segment_document(split_paragraphs(text), max_chars)

# ruff: noqa: E501  (prototype scripts, to be ported into lcm.data.build_corpus)
"""Shared helpers for the issue-21 corpus prototypes (stdlib only).

normalize_ws / split_sentences / is_sentence_like / prose_paragraphs are copied from
lcm/data/build_corpus/textutil.py (unchanged logic) so that the filter behaves like the
project's build-corpus. Writer: deterministic gzip JSONL (mtime=0), like writer.py.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEB = HERE / "deb"
X = HERE / "x"
OUT = HERE / "out"

_ABBREV = frozenset(
    {
        "e.g",
        "i.e",
        "vs",
        "cf",
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "st",
        "jr",
        "sr",
        "no",
        "nos",
        "fig",
        "figs",
        "vol",
        "vols",
        "ed",
        "eds",
        "dept",
        "approx",
        "al",
        "viz",
        "esp",
        "ca",
        "c",
        "ibid",
        "resp",
        "u.s",
        "u.k",
        "ph.d",
        "v",
        "n.b",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "incl",
        "ver",
        "eq",
        "gen",
        "col",
        "lt",
        "capt",
        "rev",
        "hon",
        "gov",
        "sen",
        "rep",
        "mt",
        "ft",
        "pp",
        "p",
        "ch",
        "sec",
        "art",
        "op",
        "cit",
    }
)
_BOUNDARY = re.compile(r"([.!?]+[\"'\u201d\u2019)\]]*)(\s+)(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_WORD_SPLIT = re.compile(r"[\s(\[\"']")
_SINGLE_LETTER = re.compile(r"[a-z]")
_TERMINAL = re.compile(r"[.!?][\"'\u201d\u2019)\]]*$")
_STARTS_LIKE_SENTENCE = re.compile(r"[\"'\u201c\u2018(\[]?[A-Z0-9]")
_WS = re.compile(r"\s+")


def normalize_ws(text: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def split_sentences(text: str) -> list[str]:
    text = normalize_ws(text)
    out, start = [], 0
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


def _mostly_letters(s: str) -> bool:
    c = s.replace(" ", "")
    return sum(ch.isalpha() for ch in c) >= 0.6 * len(c)


def is_sentence_like(s: str, min_words: int = 3) -> bool:
    if len(s.split()) < min_words:
        return False
    if not _STARTS_LIKE_SENTENCE.match(s) or not _TERMINAL.search(s):
        return False
    return _mostly_letters(s)


def prose_paragraphs(paragraphs, min_good: int = 1) -> list[str]:
    return [p for p in paragraphs if sum(map(is_sentence_like, split_sentences(p))) >= min_good]


def ensure_unpacked(package: str, members: list[str] | None = None) -> Path:
    """Unpack deb/<package>_*.deb into x/<package>/ (once). ``members``: tar wildcards to
    extract selectively (big game-data packages), else dpkg-deb -x of everything."""
    dest = X / package
    stamp = dest / ".unpacked"
    if stamp.exists():
        return dest
    debs = sorted(DEB.glob(f"{package}_*.deb"))
    if not debs:
        sys.exit(f"missing {DEB}/{package}_*.deb: run `cd {DEB} && apt-get download {package}`")
    dest.mkdir(parents=True, exist_ok=True)
    if members:
        p1 = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[-1])], stdout=subprocess.PIPE)
        subprocess.run(
            ["tar", "-x", "-C", str(dest), "--wildcards", *members], stdin=p1.stdout, check=False
        )
        p1.wait()
    else:
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(dest)], check=True)
    stamp.touch()
    return dest


def write_docs(source: str, docs) -> dict:
    """Write docs to out/<source>.docs.jsonl.gz; return stats (docs, paragraphs, sentences)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{source}.docs.jsonl.gz"
    tmp = path.with_suffix(".tmp")
    n = paras = sents = good = words = 0
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        for d in docs:
            if not d["paragraphs"]:
                continue
            gz.write(json.dumps(d, ensure_ascii=False).encode("utf-8") + b"\n")
            n += 1
            for p in d["paragraphs"]:
                paras += 1
                ss = split_sentences(p)
                sents += len(ss)
                good += sum(map(is_sentence_like, ss))
                words += len(p.split())
    os.replace(tmp, path)
    stats = {
        "source": source,
        "docs": n,
        "paragraphs": paras,
        "sentences": sents,
        "sentence_like": good,
        "words": words,
    }
    print(json.dumps(stats))
    return stats

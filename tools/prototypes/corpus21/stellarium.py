# ruff: noqa: E501  (prototype scripts, to be ported into lcm.data.build_corpus)
"""stellarium-data -> out/stellarium.docs.jsonl.gz (stdlib only).

Stellarium 0.22 sky-culture descriptions (skycultures/*/description.en.utf8, HTML): essays
on how ~60 peoples (Chinese, Mongolian, Hawaiian, Tukano, Sami, ...) named and used the
stars: encyclopedic/ethnographic prose. Each sky culture carries its own licence in
info.ini; only those under GPL, CC BY or CC BY-SA (any version, optionally + Free Art
License) are kept: the NC and ND ones (lokono, arabic_*, babylonian_*, greek_*, kamilaroi,
dakota, ojibwe, xhosa, zulu, khoi-san, maya, egyptian_dendera, ...) and unlicensed ones are
skipped. Also the landscapes' descriptions (landscape.ini licence is not shipped: they fall
under the package's GPL-2+). One document per description; <p> text only, citation marks
like [1] removed, "External links"/"References" sections dropped.
"""

from __future__ import annotations

import configparser
import glob
import os
import re
from html.parser import HTMLParser

from common import ensure_unpacked, normalize_ws, prose_paragraphs, write_docs

PKG = "stellarium-data"
BASE = "usr/share/stellarium"
OK_LICENCE = re.compile(r"^\s*(GNU GPL|GPL|CC BY(-SA)? \d|CC BY-SA|CC0|public domain)", re.I)
BAD = re.compile(r"\bNC\b|\bND\b|non-?commercial|no ?deriv", re.I)
STOP_HEADINGS = re.compile(
    r"external links|references|bibliography|sources|further reading|authors?", re.I
)


class Paras(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title, self.paras, self.buf = "", [], None
        self.head, self.stopped = None, False

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3", "h4"):
            self.head = ""
        elif tag == "p" and not self.stopped:
            self.buf = []
        elif tag == "br" and self.buf is not None:
            self.buf.append(" ")

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3", "h4") and self.head is not None:
            h = normalize_ws(self.head)
            if tag == "h1" and not self.title:
                self.title = h
            if STOP_HEADINGS.fullmatch(h):
                self.stopped = True
            self.head = None
        elif tag == "p" and self.buf is not None:
            self.paras.append(normalize_ws("".join(self.buf)))
            self.buf = None

    def handle_data(self, data):
        if self.head is not None:
            self.head += data
        if self.buf is not None:
            self.buf.append(data)


def licence(culture_dir: str) -> str:
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cp.read(os.path.join(culture_dir, "info.ini"), encoding="utf-8")
        return cp.get("info", "license", fallback="")
    except configparser.Error:
        return ""


def docs(report=None):
    root = ensure_unpacked(PKG)
    items = []
    for d in sorted(glob.glob(os.path.join(root, BASE, "skycultures/*/"))):
        lic = licence(d)
        ok = bool(OK_LICENCE.match(lic)) and not BAD.search(lic)
        if report is not None:
            report.append((os.path.basename(d.rstrip("/")), lic, ok))
        if ok:
            items.append((d + "description.en.utf8", lic))
    for f in sorted(glob.glob(os.path.join(root, BASE, "landscapes/*/description.en.utf8"))):
        items.append((f, "GPL-2+ (package)"))
    for path, lic in items:
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            p = Paras()
            p.feed(f.read())
        paras = [re.sub(r"\s*\[\d+(?:[,–-]\s*\d+)*\]", "", x) for x in p.paras]
        paras = prose_paragraphs(normalize_ws(x) for x in paras if x)
        if paras:
            rel = os.path.relpath(os.path.dirname(path), os.path.join(root, BASE))
            yield {
                "id": f"stellarium/{rel}",
                "title": p.title or os.path.basename(os.path.dirname(path)),
                "paragraphs": paras,
                "license": lic,
            }


if __name__ == "__main__":
    write_docs("stellarium", docs())

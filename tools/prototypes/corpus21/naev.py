# ruff: noqa: E501  (prototype scripts, to be ported into lcm.data.build_corpus)
"""naev-data -> out/naev.docs.jsonl.gz (stdlib only).

Naev 0.8 (GPL-3+) space-trading game text:
  * dat/events/neutral/news.lua: in-game news articles (headline -> title, article ->
    paragraph), one document per article (news-wire style);
  * dat/assets/*.xml: planet/station <description> and <bar> texts (encyclopedic sci-fi);
  * dat/ships, dat/outfits: <description> texts (technical-catalogue prose);
  * dat/missions, dat/events (*.lua): every _("...") / _([[...]]) string with a prose
    sentence: mission offers, briefings, dialogue, narration. One document per file.
printf placeholders are filled deterministically (seeded by the doc id): %s with a
planet or system name from dat/assets / dat/ssys, %d with a number; colour codes (#p, #0)
are removed; strings with other templating ({var}, ${...}) are dropped.
"""

from __future__ import annotations

import glob
import html
import os
import random
import re
import zlib

from common import ensure_unpacked, normalize_ws, prose_paragraphs, write_docs

PKG = "naev-data"
DAT = "usr/share/naev/dat"
LUA_STR = re.compile(
    r'\b_\(\s*(?:\[(=*)\[(.*?)\]\1\]|"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\')', re.S
)
NEWS = re.compile(
    r'tag\s*=\s*N?_\(\s*"((?:[^"\\]|\\.)*)"\s*\)\s*,\s*desc\s*=\s*_\(\s*"((?:[^"\\]|\\.)*)"', re.S
)
XML_TEXT = re.compile(r"<(description|bar)>(.*?)</\1>", re.S)
NAME = re.compile(r'<(?:asset|ssys) name="([^"]+)"')


def unescape(s: str) -> str:
    return s.replace('\\"', '"').replace("\\'", "'").replace("\\n", "\n").replace("\\t", " ")


def filler(doc_id: str, names: list[str]):
    rng = random.Random(zlib.crc32(doc_id.encode()))

    def fill(text: str) -> str | None:
        text = re.sub(r"#[a-zA-Z0]", "", text)
        text = re.sub(r"%(?:\d\$)?s", lambda m: rng.choice(names), text)
        text = re.sub(r"%(?:\d\$)?(?:\.\d)?[dfi]", lambda m: f"{rng.randint(2, 90)}", text)
        text = text.replace("%%", "%")
        if re.search(r"[{}]|%\S|\$\(|<[a-z/]", text):
            return None
        text = re.sub(r"^\s*Comm [^>]{1,40}>\s*", "", text)  # comm-channel speaker tag
        return normalize_ws(text)

    return fill


def docs():
    root = ensure_unpacked(PKG)
    dat = os.path.join(root, DAT)
    names = []
    for path in sorted(
        glob.glob(os.path.join(dat, "assets/*.xml")) + glob.glob(os.path.join(dat, "ssys/*.xml"))
    ):
        with open(path, encoding="utf-8", errors="replace") as f:
            m = NAME.search(f.read(2000))
        if m and not m.group(1).startswith(("Virtual", "Test")):
            names.append(m.group(1))
    names = sorted(set(names)) or ["Caladan"]
    seen: set[str] = set()

    def keep(paras):
        out = []
        for p in prose_paragraphs(p for p in paras if p):
            if p not in seen:
                seen.add(p)
                out.append(p)
        return out

    news = os.path.join(dat, "events/neutral/news.lua")
    with open(news, encoding="utf-8", errors="replace") as f:
        for i, m in enumerate(NEWS.finditer(f.read())):
            fill = filler(f"naev/news/{i}", names)
            paras = keep([fill(unescape(m.group(2)))])
            if paras:
                yield {"id": f"naev/news/{i}", "title": unescape(m.group(1)), "paragraphs": paras}
    for sub in ("assets", "ships", "outfits"):
        for path in sorted(glob.glob(os.path.join(dat, sub, "**/*.xml"), recursive=True)):
            rel = os.path.relpath(path, dat)
            with open(path, encoding="utf-8", errors="replace") as f:
                src = f.read()
            m = re.search(r'name="([^"]+)"', src)
            fill = filler(rel, names)
            raw = [html.unescape(t) for _, t in XML_TEXT.findall(src)]
            paras = keep(fill(p) for t in raw for p in re.split(r"\n\s*\n", t))
            if paras:
                yield {"id": f"naev/{rel}", "title": m.group(1) if m else "", "paragraphs": paras}
    for sub in ("missions", "events"):
        for path in sorted(glob.glob(os.path.join(dat, sub, "**/*.lua"), recursive=True)):
            if path == news:
                continue
            rel = os.path.relpath(path, dat)
            with open(path, encoding="utf-8", errors="replace") as f:
                src = f.read()
            src = re.sub(r"^\s*--.*$", "", src, flags=re.M)
            m = re.search(r'<(?:mission|event) name="([^"]+)"', src)
            fill = filler(rel, names)
            raw = [
                unescape(g[1] or g[2] or g[3] or "") if not g[1] else g[1]
                for g in LUA_STR.findall(src)
            ]
            paras = keep(fill(p) for t in raw for p in re.split(r"\n\s*\n", t))
            if paras:
                yield {"id": f"naev/{rel}", "title": m.group(1) if m else "", "paragraphs": paras}


if __name__ == "__main__":
    write_docs("naev", docs())

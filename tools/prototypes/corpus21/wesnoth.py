# ruff: noqa: E501  (prototype scripts, to be ported into lcm.data.build_corpus)
"""wesnoth-1.16-<campaign> packages -> out/wesnoth.docs.jsonl.gz (stdlib only).

Battle for Wesnoth mainline campaigns (GPL-2+): one document per scenario file (and per
campaign _main.cfg / utils file that holds text), in file order:
  * [story] [part] story= narration (third-person fantasy narrative),
  * [message] message= dialogue, as "Speaker: line" when the speaker is a named character
    (id starting with a capital; unit/second_unit/narrator etc. give no prefix),
  * long description= strings (campaign blurbs; objective one-liners are skipped).
Translatable strings are _ "..." with "" as the escaped quote; WML markup (<i>, <span>),
{MACRO} calls and $variables are removed or the paragraph dropped.
Use --no-speaker to drop the "Speaker: " prefixes.
"""

from __future__ import annotations

import glob
import html
import os
import re
import sys

from common import ensure_unpacked, normalize_ws, write_docs

CAMPAIGNS = (
    "did",
    "dm",
    "dw",
    "ei",
    "httt",
    "l",
    "low",
    "nr",
    "sof",
    "sota",
    "sotbe",
    "thot",
    "trow",
    "tsg",
    "ttb",
    "utbs",
)
BASE = "usr/share/games/wesnoth/1.16/data/campaigns"
ATTR = re.compile(
    r'^\s*(speaker|message|story|description|name)\s*=\s*(?:_\s*)?"((?:[^"]|"")*)"'
    r"|^\s*\[(message|part|/message|campaign|scenario)\]"
    r"|^\s*speaker\s*=\s*([A-Za-z][\w ]*?)\s*$",
    re.M,
)
SPEAKER_SKIP = {"narrator", "unit", "second_unit"}


def clean(text: str) -> str | None:
    text = html.unescape(text.replace('""', '"'))
    text = re.sub(r"</?(?:i|b|span|small|big|bold|italic)[^>]*>", "", text)
    if re.search(r"[{}$<>@]", text):
        return None
    return normalize_ws(text)


def docs(speaker_prefix: bool = True):
    seen: set[str] = set()
    for camp in CAMPAIGNS:
        root = ensure_unpacked(f"wesnoth-1.16-{camp}")
        for path in sorted(glob.glob(os.path.join(root, BASE, "**/*.cfg"), recursive=True)):
            if "/units/" in path:
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                src = f.read()
            title, speaker, paras = "", None, []
            for m in ATTR.finditer(src):
                if m.group(3):
                    speaker = None
                    continue
                if m.group(4):
                    speaker = m.group(4)
                    continue
                key, val = m.group(1), m.group(2)
                if key == "speaker":
                    speaker = val
                    continue
                if key == "name":
                    if not title and val.strip():
                        title = normalize_ws(val)
                    continue
                if key == "description" and len(val.split()) < 10:
                    continue
                for piece in re.split(r"\n\s*\n", val):
                    p = clean(piece)
                    if not p or len(p.split()) < 2:
                        continue
                    if (
                        key == "message"
                        and speaker_prefix
                        and speaker
                        and speaker[:1].isupper()
                        and speaker not in SPEAKER_SKIP
                    ):
                        p = f"{speaker.replace('_', ' ')}: {p}"
                    if p in seen:
                        continue
                    seen.add(p)
                    paras.append(p)
            if paras:
                rel = os.path.relpath(path, os.path.join(root, BASE))
                yield {"id": f"wesnoth/{rel}", "title": title, "paragraphs": paras}


if __name__ == "__main__":
    write_docs("wesnoth", docs(speaker_prefix="--no-speaker" not in sys.argv))

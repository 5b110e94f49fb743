# ruff: noqa: E501  (prototype scripts, to be ported into lcm.data.build_corpus)
"""freedroidrpg-data -> out/freedroidrpg.docs.jsonl.gz (stdlib only).

FreedroidRPG (GPL-2+) NPC dialogues: one document per dialog file (storyline/act*/dialogs,
base/dialogs), lines in source order as "Speaker: line": Tux:says -> "Tux", Npc:says ->
the NPC (the file stem, or the name given by Npc:set_name), dialogue options
(text = _"...") -> "Tux". Npc:says_random keeps its first alternative. The intro/outro
title texts (titles/*.lua, English only) become narrative docs. `%s` filled with "Tux"
when it stands for the player's name, lines with other placeholders are dropped;
[b]/[/b] markup is removed. --no-speaker drops the prefixes.
"""

from __future__ import annotations

import glob
import os
import re
import sys

from common import ensure_unpacked, normalize_ws, write_docs

PKG = "freedroidrpg-data"
DATA = "usr/share/freedroidrpg/data"
STR = r'_\s*"((?:[^"\\]|\\.)*)"'
LINE = re.compile(
    r"(?P<who>Tux|Npc):says(?:_random)?\(\s*" + STR + r"(?P<rest>[^\n]*)"
    r"|^\s*text\s*=\s*" + STR.replace("(", "(?P<opt>", 1) + r'|Npc:set_name\("(?P<name>[^"]+)"\)',
    re.M,
)
TITLE_STR = re.compile(r'text\s*=\s*_?\s*\[\[(.*?)\]\]|text\s*=\s*_\s*"((?:[^"\\]|\\.)*)"', re.S)


def unescape(s: str) -> str:
    return s.replace('\\"', '"').replace("\\n", "\n").replace("\\'", "'")


def clean(s: str, rest: str = "") -> str | None:
    s = re.sub(r"\[/?[a-z]+\]", "", unescape(s))
    if "%s" in s and "get_player_name" in rest and s.count("%s") == 1:
        s = s.replace("%s", "Tux")
    if re.search(r"%[sdi0-9]|\$\$|\{|\}", s):
        return None
    s = normalize_ws(s)
    return s if len(s.split()) >= 2 else None


def dialog_docs(root, prefix: bool):
    files = sorted(
        glob.glob(os.path.join(root, DATA, "storyline/*/dialogs/*.lua"))
        + glob.glob(os.path.join(root, DATA, "base/dialogs/*.lua"))
    )
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            src = f.read()
        src = re.sub(r"--\[\[WIKI.*?WIKI\]\]--", "", src, flags=re.S)  # design notes
        npc = os.path.splitext(os.path.basename(path))[0].replace("_", " ")
        paras = []
        for m in LINE.finditer(src):
            if m.group("name"):
                npc = m.group("name")
                continue
            if m.group("who"):
                text, who, rest = (
                    m.group(2),
                    ("Tux" if m.group("who") == "Tux" else npc),
                    m.group("rest"),
                )
            else:
                text, who, rest = m.group("opt"), "Tux", ""
            p = clean(text, rest)
            if p:
                paras.append(f"{who}: {p}" if prefix else p)
        if paras:
            rel = os.path.relpath(path, os.path.join(root, DATA))
            yield {"id": f"freedroidrpg/{rel}", "title": npc, "paragraphs": paras}


def title_docs(root):
    files = sorted(
        glob.glob(os.path.join(root, DATA, "base/titles/*.lua"))
        + glob.glob(os.path.join(root, DATA, "storyline/*/titles/*.lua"))
    )
    for path in files:
        if os.path.basename(path) in (
            "Credits.lua",
            "Controls.lua",
            "Contribute.lua",
            "TakeoverInstructions.lua",
        ):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            src = f.read()
        paras = []
        for m in TITLE_STR.finditer(src):
            for piece in re.split(r"\n\s*\n", unescape(m.group(1) or m.group(2) or "")):
                p = clean(piece)
                if p and len(p.split()) >= 4:
                    paras.append(p)
        if paras:
            rel = os.path.relpath(path, os.path.join(root, DATA))
            yield {
                "id": f"freedroidrpg/{rel}",
                "title": os.path.basename(path)[:-4],
                "paragraphs": paras,
            }


MACHINE = re.compile(r"^(Terminal|AfterTakeover|DSB-|.*[Tt]erminal)")


def docs(prefix: bool = True):
    root = ensure_unpacked(PKG)
    yield from title_docs(root)
    for d in dialog_docs(root, prefix):  # computer terminals: command menus, not dialogue
        if not MACHINE.match(os.path.basename(d["id"])):
            yield d


if __name__ == "__main__":
    write_docs("freedroidrpg", docs("--no-speaker" not in sys.argv))

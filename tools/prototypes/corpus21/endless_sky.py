# ruff: noqa: E501  (prototype scripts, to be ported into lcm.data.build_corpus)
"""endless-sky-data -> out/endless_sky.docs.jsonl.gz (stdlib only).

Endless Sky's data files are tab-indented token trees with "quoted" or `backticked` strings.
One document per top-level object that carries prose:
  * planet: its `description` and `spaceport` lines (encyclopedic sci-fi world notes);
  * mission / event / conversation: `conversation` text lines (second-person narrative and
    dialogue; only the first option of each `choice`, so it reads as one playthrough),
    `dialog` lines and the mission `description`;
  * ship / outfit: `description` lines;
  * news: `message` lines (rumours overheard in spaceports).
Game placeholders (<planet>, <payment>, <first> ...) are filled deterministically (seeded
by the doc id) from the game's own planet/system names and plausible numbers; paragraphs
with any other <tag> are dropped. Text inside backticks that starts with a tab is a new
paragraph, as in the game.
"""

from __future__ import annotations

import glob
import os
import random
import re
import zlib

from common import ensure_unpacked, normalize_ws, write_docs

PKG = "endless-sky-data"
DATA = "usr/share/games/endless-sky/data"
TOKEN = re.compile(r'`([^`]*)`|"([^"]*)"|(\S+)')
TEXT_KEYS = {"description", "spaceport", "dialog", "message"}
FIRST = ["Alex", "Maria", "Tomek", "Jun", "Amina", "Rhys", "Priya", "Oskar", "Lena", "Dario"]
LAST = ["Morgan", "Okafor", "Lindqvist", "Tanaka", "Alvarez", "Petrov", "Nakamura", "Reyes"]
SHIPS = ["Wayfarer", "Second Chance", "Lucky Star", "Albatross", "Far Horizon"]
CARGO = ["medical supplies", "textiles", "heavy metals", "electronics", "food", "plastic"]
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def parse(path: str):
    """Yield (indent, [tokens]) for each non-comment line."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stripped = line.rstrip("\n")
            body = stripped.lstrip("\t")
            if not body.strip() or body.lstrip().startswith("#"):
                continue
            indent = len(stripped) - len(body)
            toks = [next(g for g in m.groups() if g is not None) for m in TOKEN.finditer(body)]
            quoted = body.lstrip()[:1] in '`"'
            yield indent, toks, quoted


def filler(rng: random.Random, planets: list[str], systems: list[str]) -> dict[str, str]:
    planet = rng.choice(planets)
    n = rng.randint(2, 60)
    return {
        "planet": planet,
        "origin": rng.choice(planets),
        "destination": f"{rng.choice(planets)} in the {rng.choice(systems)} system",
        "system": rng.choice(systems),
        "first": rng.choice(FIRST),
        "last": rng.choice(LAST),
        "ship": rng.choice(SHIPS),
        "npc": rng.choice(SHIPS),
        "cargo": rng.choice(CARGO),
        "commodity": rng.choice(CARGO),
        "payment": f"{rng.randint(5, 900) * 1000:,} credits",
        "tons": f"{n} tons",
        "capacity": f"{n} tons",
        "bunks": f"{rng.randint(1, 9)}",
        "passengers": f"{rng.randint(2, 9)} passengers",
        "fare": f"{rng.randint(2, 9)} passengers",
        "stopovers": f"{rng.choice(planets)} and {rng.choice(planets)}",
        "date": f"{rng.choice(WEEKDAYS)}, {rng.randint(1, 28)} {rng.choice(MONTHS)} {rng.randint(3013, 3016)}",
        "day": f"{rng.randint(1, 28)} {rng.choice(MONTHS)}",
    }


def clean(text: str, fill: dict[str, str]) -> str | None:
    text = re.sub(r"<([a-z][a-z ]*)>", lambda m: fill.get(m.group(1), m.group(0)), text)
    if re.search(r"<[^>]*>|\$\{|&\[", text):
        return None
    return normalize_ws(text)


def docs():
    root = ensure_unpacked(PKG)
    files = sorted(glob.glob(os.path.join(root, DATA, "**/*.txt"), recursive=True))
    planets, systems = [], []
    for path in files:
        for indent, toks, _ in parse(path):
            if indent == 0 and len(toks) > 1 and toks[0] in ("planet", "system"):
                (planets if toks[0] == "planet" else systems).append(toks[1])
    planets, systems = sorted(set(planets)), sorted(set(systems))
    seen: set[str] = set()
    for path in files:
        rel = os.path.relpath(path, os.path.join(root, DATA))
        obj = None
        for indent, toks, quoted in list(parse(path)) + [(0, ["<eof>"], False)]:
            if indent == 0:
                if obj and obj["raw"]:
                    rng = random.Random(zlib.crc32(obj["id"].encode()))
                    fill = filler(rng, planets, systems)
                    paras = []
                    for raw in obj["raw"]:
                        for piece in re.split(r"\n|(?=\t)", raw):
                            p = clean(piece, fill)
                            if p and p not in seen and len(p.split()) >= 3:
                                seen.add(p)
                                paras.append(p)
                    if paras:
                        yield {"id": obj["id"], "title": obj["title"], "paragraphs": paras}
                name = toks[1] if len(toks) > 1 else ""
                obj = {
                    "id": f"endless-sky/{rel}/{toks[0]}/{name}",
                    "title": name,
                    "raw": [],
                    "kind": toks[0],
                    "stack": [],
                }
                continue
            stack = obj["stack"]
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = [k for _, k, _ in stack]
            if quoted:
                # a bare text line: conversation narration, or a choice option
                in_conv = "conversation" in parent
                if in_conv:
                    if parent and parent[-1] == "choice":
                        st = stack[-1]
                        if st[2]:  # only the first option of each choice
                            continue
                        st[2] = True
                    obj["raw"].append(toks[0])
                elif parent and parent[-1] in ("dialog", "description", "message"):
                    obj["raw"].append(toks[0])
                stack.append([indent, "<text>", False])
                continue
            key = toks[0]
            if (
                key in TEXT_KEYS
                and len(toks) > 1
                and obj["kind"]
                in ("planet", "mission", "event", "ship", "outfit", "news", "conversation")
                and not (key == "description" and obj["kind"] == "mission" and "npc" in parent)
            ):
                obj["raw"].append(toks[1])
            stack.append([indent, key, False])


if __name__ == "__main__":
    write_docs("endless_sky", docs())

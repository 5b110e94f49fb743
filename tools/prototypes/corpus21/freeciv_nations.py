# ruff: noqa: E501  (prototype scripts, to be ported into lcm.data.build_corpus)
"""freeciv-data -> out/freeciv_nations.docs.jsonl.gz (stdlib only).

Freeciv 3.0 (GPL-2+) nation rulesets: the `legend` of each of the ~560 nations is a short
encyclopedic paragraph about a real (or historical) people or state. One document per
nation: title = its plural name, paragraphs = [legend]. Only the legends are kept (the
rulesets' game help texts are software-manual prose, which the corpus already has).
"""

from __future__ import annotations

import glob
import os
import re

from common import ensure_unpacked, normalize_ws, write_docs

PKG = "freeciv-data"
NATIONS = "usr/share/games/freeciv/nation/*.ruleset"
FIELD = re.compile(
    r'^(legend|plural|name)\s*=\s*_\(\s*(?:"\?[a-z]+:)?"?((?:[^"\\]|\\.)*)"\s*\)', re.M | re.S
)


def unescape(s: str) -> str:
    s = s.replace("\\\n", "")  # line continuation
    s = s.replace("?plural:", "").replace("?nation:", "")
    return s.replace('\\"', '"').replace("\\'", "'").replace("\\n", "\n")


def docs():
    root = ensure_unpacked(PKG)
    for path in sorted(glob.glob(os.path.join(root, NATIONS))):
        with open(path, encoding="utf-8", errors="replace") as f:
            src = f.read()
        fields = {}
        for key, val in FIELD.findall(src):
            fields.setdefault(key, unescape(val))
        legend = normalize_ws(fields.get("legend", ""))
        if len(legend.split()) >= 5:
            title = normalize_ws(fields.get("plural") or fields.get("name") or "")
            title = re.sub(r"^\?[a-z]+:", "", title)
            yield {
                "id": f"freeciv/nation/{os.path.basename(path)}",
                "title": title,
                "paragraphs": [legend],
            }


if __name__ == "__main__":
    write_docs("freeciv_nations", docs())

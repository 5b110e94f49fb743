# ruff: noqa: E501  (prototype scripts, to be ported into lcm.data.build_corpus)
"""cataclysm-dda-data -> out/cataclysm.docs.jsonl.gz (stdlib only).

Cataclysm: Dark Days Ahead (0.F) JSON data, CC-BY-SA-3.0. One document per JSON object
(item, monster, NPC talk topic, mission, profession, snippet...), its paragraphs are the
prose strings under the text-bearing keys below (descriptions; snippet texts such as
newspaper clippings, notes, radio messages and graffiti; NPC dialogue lines and mission
offer/accept/refuse dialogue). Colour tags are unwrapped; paragraphs that still hold a
game placeholder (<npc_name>, %s ...) are dropped; exact repeats are dropped.
"""

from __future__ import annotations

import glob
import json
import os
import re

from common import ensure_unpacked, normalize_ws, write_docs

PKG = "cataclysm-dda-data"
DATA = "usr/share/games/cataclysm-dda/json"
TEXT_KEYS = {
    "description",
    "text",
    "dynamic_line",
    "offer",
    "yes",
    "no",
    "advice",
    "success",
    "failure",
    "accepted",
    "rejected",
    "success_lie",
    "describe",
    "detailed_definition",
    "msg",
    "message",
    "messages",
    "desc",
    "info",
    "snippets",
}
SKIP_KEYS = {"//", "//2", "rows", "str", "str_pl", "id", "type", "time", "name", "condition"}
COLOR = re.compile(r"</?(?:info|good|bad|neutral|color(?:_[a-z_]+)?|stat|header|bold|em)>")


def strings(o, inside=False):
    """Yield the prose strings of a JSON value; ``inside``: under a text-bearing key."""
    if isinstance(o, dict):
        for k, v in o.items():
            if k in SKIP_KEYS:
                continue
            yield from strings(v, inside or k in TEXT_KEYS)
    elif isinstance(o, list):
        for v in o:
            yield from strings(v, inside)
    elif isinstance(o, str) and inside:
        yield o


def clean(s: str) -> list[str]:
    out = []
    for piece in re.split(r"\n+", COLOR.sub("", s)):
        p = normalize_ws(piece)
        if not p or re.search(r"<[^>]+>|%[sdi0-9.]|\$\{", p) or len(p.split()) < 3:
            continue
        out.append(p)
    return out


def docs():
    root = ensure_unpacked(PKG)
    base = os.path.join(root, DATA)
    seen: set[str] = set()
    for path in sorted(glob.glob(os.path.join(base, "**/*.json"), recursive=True)):
        rel = os.path.relpath(path, base)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (ValueError, UnicodeDecodeError):
            continue
        for i, obj in enumerate(data if isinstance(data, list) else [data]):
            if not isinstance(obj, dict):
                continue
            oid = obj.get("id") or obj.get("category") or obj.get("abstract") or str(i)
            if isinstance(oid, list):
                oid = oid[0] if oid else str(i)
            name = obj.get("name", "")
            if isinstance(name, dict):
                name = name.get("str") or name.get("male") or ""
            # snippet collections: one document per snippet text
            if obj.get("type") == "snippet" and isinstance(obj.get("text"), list):
                for j, t in enumerate(obj["text"]):
                    sid = t.get("id", j) if isinstance(t, dict) else j
                    txt = t.get("text", "") if isinstance(t, dict) else t
                    if isinstance(txt, dict):  # {"str": ...} translation object
                        txt = txt.get("str", "")
                    paras = [p for p in clean(str(txt)) if p not in seen]
                    seen.update(paras)
                    if paras:
                        yield {
                            "id": f"cdda/{rel}/{oid}/{sid}",
                            "title": str(obj.get("category", "")),
                            "paragraphs": paras,
                        }
                continue
            paras = []
            for s in strings(obj):
                for p in clean(s):
                    if p not in seen:
                        seen.add(p)
                        paras.append(p)
            if paras:
                yield {
                    "id": f"cdda/{rel}/{obj.get('type', '')}/{oid}",
                    "title": str(name),
                    "paragraphs": paras,
                }


if __name__ == "__main__":
    write_docs("cataclysm", docs())

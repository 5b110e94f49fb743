"""Extractors for the Debian game and data packages that carry English prose (issue 21).

Seven sources, one function each, with the same contract as :mod:`.sources`: the argument is
the unpack root (``<work>/x``, one ``<package>/`` tree per ``.deb``), the result an iterator
of ``{"id", "title", "paragraphs"}`` documents. Only documents with paragraphs are yielded.

* :func:`endless_sky`: planet, ship and outfit descriptions, mission conversations, news;
* :func:`cataclysm`: Cataclysm: Dark Days Ahead item/monster texts, snippets, NPC dialogue;
* :func:`naev`: Naev news articles, planet/ship/outfit descriptions, mission and event text;
* :func:`freedroidrpg`: FreedroidRPG NPC dialogues and intro/outro texts;
* :func:`stellarium`: Stellarium sky-culture and landscape essays (free licences only);
* :func:`wesnoth`: Battle for Wesnoth mainline campaigns (story parts and dialogue);
* :func:`freeciv_nations`: the legend of each Freeciv nation.

``wesnoth`` and ``freeciv_nations`` are the held-out, unseen-domain test of the codec (see
:mod:`lcm.text.heldout`); the extraction itself does not depend on that.

Game text carries placeholders (``<planet>``, ``%s``). Where the game fills them at run time
they are filled here too, deterministically: a ``random.Random`` seeded by the CRC-32 of the
document id picks from the game's own names, so a rebuild gives byte-identical output. Text
with any other templating is dropped rather than kept half-filled.

The logic is ported unchanged from the issue-21 survey's prototype scripts, so a rebuild
reproduces the survey's files byte for byte. Only the standard library is used.
"""

from __future__ import annotations

import configparser
import glob
import html
import json
import os
import random
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from lcm.data.build_corpus.textutil import normalize_ws, prose_paragraphs

Doc = dict[str, Any]


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _glob(base: str, pattern: str, what: str) -> list[str]:
    """Sorted (stable ids) files matching a recursive glob under ``base``; at least one.

    Raises:
        FileNotFoundError: If nothing matches: the package layout is not the expected one,
            and an empty source file would otherwise pass unnoticed.
    """
    paths = sorted(glob.glob(os.path.join(base, pattern), recursive=True))
    if not paths:
        raise FileNotFoundError(f"no {what} ({pattern}) under {base}")
    return paths


def _seeded(doc_id: str) -> random.Random:
    """The placeholder-filling generator of one document (same id, same fill)."""
    return random.Random(zlib.crc32(doc_id.encode()))


# ------------------------------------------------------------------------- Endless Sky
ENDLESS_SKY_PACKAGE = "endless-sky-data"
_ES_DATA = f"{ENDLESS_SKY_PACKAGE}/usr/share/games/endless-sky/data"
# A data-file token: `backticked`, "quoted" or bare.
_ES_TOKEN = re.compile(r'`([^`]*)`|"([^"]*)"|(\S+)')
_ES_TEXT_KEYS = frozenset({"description", "spaceport", "dialog", "message"})
_ES_TEXT_KINDS = frozenset({"planet", "mission", "event", "ship", "outfit", "news", "conversation"})
_ES_TAG = re.compile(r"<([a-z][a-z ]*)>")
_ES_TEMPLATING = re.compile(r"<[^>]*>|\$\{|&\[")
_ES_PIECE = re.compile(r"\n|(?=\t)")  # a tab inside backticks starts a paragraph, as in-game
_ES_FIRST = ["Alex", "Maria", "Tomek", "Jun", "Amina", "Rhys", "Priya", "Oskar", "Lena", "Dario"]
_ES_LAST = ["Morgan", "Okafor", "Lindqvist", "Tanaka", "Alvarez", "Petrov", "Nakamura", "Reyes"]
_ES_SHIPS = ["Wayfarer", "Second Chance", "Lucky Star", "Albatross", "Far Horizon"]
_ES_CARGO = ["medical supplies", "textiles", "heavy metals", "electronics", "food", "plastic"]
_WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@dataclass
class _EsObject:
    """A top-level Endless Sky object being read, with its open child nodes."""

    id: str
    title: str
    kind: str
    raw: list[str] = field(default_factory=list)  # its text strings, in file order
    # [indent, key, a choice option was taken]: the path from the object to the current line
    stack: list[list[Any]] = field(default_factory=list)


def _es_lines(path: str) -> Iterator[tuple[int, list[str], bool]]:
    """Yield ``(indent, tokens, quoted)`` per non-comment line of an Endless Sky data file.

    ``indent`` counts leading tabs; ``quoted``: the line starts with a string (a bare text
    line such as conversation narration), not with a key.
    """
    for line in _read_text(path).split("\n"):
        body = line.lstrip("\t")
        if not body.strip() or body.lstrip().startswith("#"):
            continue
        tokens = [next(g for g in m.groups() if g is not None) for m in _ES_TOKEN.finditer(body)]
        yield len(line) - len(body), tokens, body.lstrip()[:1] in '`"'


def _es_filler(rng: random.Random, planets: list[str], systems: list[str]) -> dict[str, str]:
    """Values for the placeholders the game fills in mission and conversation text.

    The draws are made in a fixed order, so the fill is a function of the seed alone.
    """
    planet = rng.choice(planets)
    n = rng.randint(2, 60)
    return {
        "planet": planet,
        "origin": rng.choice(planets),
        "destination": f"{rng.choice(planets)} in the {rng.choice(systems)} system",
        "system": rng.choice(systems),
        "first": rng.choice(_ES_FIRST),
        "last": rng.choice(_ES_LAST),
        "ship": rng.choice(_ES_SHIPS),
        "npc": rng.choice(_ES_SHIPS),
        "cargo": rng.choice(_ES_CARGO),
        "commodity": rng.choice(_ES_CARGO),
        "payment": f"{rng.randint(5, 900) * 1000:,} credits",
        "tons": f"{n} tons",
        "capacity": f"{n} tons",
        "bunks": f"{rng.randint(1, 9)}",
        "passengers": f"{rng.randint(2, 9)} passengers",
        "fare": f"{rng.randint(2, 9)} passengers",
        "stopovers": f"{rng.choice(planets)} and {rng.choice(planets)}",
        "date": f"{rng.choice(_WEEKDAYS)}, {rng.randint(1, 28)} {rng.choice(_MONTHS)} "
        f"{rng.randint(3013, 3016)}",
        "day": f"{rng.randint(1, 28)} {rng.choice(_MONTHS)}",
    }


def _es_clean(text: str, fill: dict[str, str]) -> str | None:
    """Fill known placeholders; None if any other tag or templating is left."""
    text = _ES_TAG.sub(lambda m: fill.get(m.group(1), m.group(0)), text)
    if _ES_TEMPLATING.search(text):
        return None
    return normalize_ws(text)


def _es_read_line(obj: _EsObject, indent: int, tokens: list[str], quoted: bool) -> None:
    """Add one indented line of an object to its text, tracking the node path."""
    stack = obj.stack
    while stack and stack[-1][0] >= indent:
        stack.pop()
    parent = [key for _, key, _ in stack]
    if quoted:  # a bare text line: conversation narration, a choice option, dialog text
        if "conversation" in parent:
            if parent[-1] == "choice":
                # Only the first option of each choice, so a conversation reads as one
                # playthrough rather than as every branch at once.
                if stack[-1][2]:
                    return
                stack[-1][2] = True
            obj.raw.append(tokens[0])
        elif parent and parent[-1] in ("dialog", "description", "message"):
            obj.raw.append(tokens[0])
        stack.append([indent, "<text>", False])
        return
    key = tokens[0]
    if (
        key in _ES_TEXT_KEYS
        and len(tokens) > 1
        and obj.kind in _ES_TEXT_KINDS
        # an NPC's description is a ship-name tag line, not prose
        and not (key == "description" and obj.kind == "mission" and "npc" in parent)
    ):
        obj.raw.append(tokens[1])
    stack.append([indent, key, False])


def endless_sky(root: Path) -> Iterator[Doc]:
    """Endless Sky (GPL-3+ text): one document per top-level data object with prose.

    Planets give their ``description`` and ``spaceport`` lines; missions, events and
    conversations their conversation text (first option of each choice), ``dialog`` lines
    and mission description; ships and outfits their ``description``; news its ``message``
    lines. Placeholders (``<planet>``, ``<payment>``...) are filled from the game's own planet
    and system names; paragraphs with other tags, or under 3 words, or seen before are
    dropped. The title is the object's name.

    Raises:
        FileNotFoundError: If the package has no data files.
        ValueError: On an indented line before any top-level object.
    """
    base = os.path.join(root, _ES_DATA)
    files = _glob(base, "**/*.txt", "Endless Sky data files")
    planets: set[str] = set()
    systems: set[str] = set()
    for path in files:
        for indent, tokens, _ in _es_lines(path):
            if indent == 0 and len(tokens) > 1 and tokens[0] in ("planet", "system"):
                (planets if tokens[0] == "planet" else systems).add(tokens[1])
    planet_names, system_names = sorted(planets), sorted(systems)
    seen: set[str] = set()

    def finish(obj: _EsObject) -> Doc | None:
        fill = _es_filler(_seeded(obj.id), planet_names, system_names)
        paras = []
        for raw in obj.raw:
            for piece in _ES_PIECE.split(raw):
                p = _es_clean(piece, fill)
                if p and p not in seen and len(p.split()) >= 3:
                    seen.add(p)
                    paras.append(p)
        return {"id": obj.id, "title": obj.title, "paragraphs": paras} if paras else None

    for path in files:
        rel = os.path.relpath(path, base)
        obj: _EsObject | None = None
        for indent, tokens, quoted in _es_lines(path):
            if indent == 0:
                doc = finish(obj) if obj and obj.raw else None
                if doc:
                    yield doc
                name = tokens[1] if len(tokens) > 1 else ""
                obj = _EsObject(f"endless-sky/{rel}/{tokens[0]}/{name}", name, tokens[0])
            elif obj is None:
                raise ValueError(f"{path}: indented line before any top-level object")
            else:
                _es_read_line(obj, indent, tokens, quoted)
        doc = finish(obj) if obj and obj.raw else None
        if doc:
            yield doc


# ------------------------------------------------------------------------------- CDDA
CATACLYSM_PACKAGE = "cataclysm-dda-data"
_CDDA_JSON = f"{CATACLYSM_PACKAGE}/usr/share/games/cataclysm-dda/json"
# Keys whose string values (at any depth below) are prose: descriptions, snippet texts
# (newspaper clippings, notes, radio messages, graffiti), NPC and mission dialogue.
_CDDA_TEXT_KEYS = frozenset(
    {
        "description", "text", "dynamic_line", "offer", "yes", "no", "advice", "success",
        "failure", "accepted", "rejected", "success_lie", "describe", "detailed_definition",
        "msg", "message", "messages", "desc", "info", "snippets",
    }
)  # fmt: skip
# Never prose, even below a text key: comments, map rows, ids, names, conditions.
_CDDA_SKIP_KEYS = frozenset(
    {"//", "//2", "rows", "str", "str_pl", "id", "type", "time", "name", "condition"}
)
_CDDA_COLOR = re.compile(r"</?(?:info|good|bad|neutral|color(?:_[a-z_]+)?|stat|header|bold|em)>")
_CDDA_TEMPLATING = re.compile(r"<[^>]+>|%[sdi0-9.]|\$\{")


def _cdda_strings(value: Any, inside: bool = False) -> Iterator[str]:
    """The prose strings of a JSON value; ``inside``: below a text-bearing key."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key not in _CDDA_SKIP_KEYS:
                yield from _cdda_strings(child, inside or key in _CDDA_TEXT_KEYS)
    elif isinstance(value, list):
        for child in value:
            yield from _cdda_strings(child, inside)
    elif isinstance(value, str) and inside:
        yield value


def _cdda_clean(text: str) -> list[str]:
    """Paragraphs of one string: colour tags unwrapped; templated or short lines dropped."""
    out = []
    for piece in re.split(r"\n+", _CDDA_COLOR.sub("", text)):
        p = normalize_ws(piece)
        if p and not _CDDA_TEMPLATING.search(p) and len(p.split()) >= 3:
            out.append(p)
    return out


def _cdda_load(path: str) -> Any:
    """A data file's JSON.

    Raises:
        ValueError: If it is not valid UTF-8 JSON (none of 0.F's files is: a bad one means
            a damaged or different package, better reported than silently skipped).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"{path}: not valid UTF-8 JSON ({e})") from None


def cataclysm(root: Path) -> Iterator[Doc]:
    """Cataclysm: Dark Days Ahead 0.F (CC-BY-SA-3.0): one document per JSON object with prose.

    Snippet collections give one document per snippet (title: the snippet category); other
    objects (items, monsters, talk topics, missions, professions...) one document with the
    prose strings under their text keys (title: the object's name). Exact repeats are
    dropped across the whole source.

    Raises:
        FileNotFoundError: If the package has no JSON data.
    """
    base = os.path.join(root, _CDDA_JSON)
    seen: set[str] = set()

    def new(paras: Iterable[str]) -> list[str]:
        out = []
        for p in paras:
            if p not in seen:
                seen.add(p)
                out.append(p)
        return out

    for path in _glob(base, "**/*.json", "Cataclysm JSON data"):
        rel = os.path.relpath(path, base)
        data = _cdda_load(path)
        for i, obj in enumerate(data if isinstance(data, list) else [data]):
            if not isinstance(obj, dict):
                continue
            oid = obj.get("id") or obj.get("category") or obj.get("abstract") or str(i)
            if isinstance(oid, list):
                oid = oid[0] if oid else str(i)
            name = obj.get("name", "")
            if isinstance(name, dict):  # a translation object
                name = name.get("str") or name.get("male") or ""
            if obj.get("type") == "snippet" and isinstance(obj.get("text"), list):
                for j, item in enumerate(obj["text"]):
                    sid = item.get("id", j) if isinstance(item, dict) else j
                    text = item.get("text", "") if isinstance(item, dict) else item
                    if isinstance(text, dict):  # {"str": ...} translation object
                        text = text.get("str", "")
                    paras = new(_cdda_clean(str(text)))
                    if paras:
                        yield {
                            "id": f"cdda/{rel}/{oid}/{sid}",
                            "title": str(obj.get("category", "")),
                            "paragraphs": paras,
                        }
                continue
            paras = new(p for s in _cdda_strings(obj) for p in _cdda_clean(s))
            if paras:
                yield {
                    "id": f"cdda/{rel}/{obj.get('type', '')}/{oid}",
                    "title": str(name),
                    "paragraphs": paras,
                }


# ------------------------------------------------------------------------------- Naev
NAEV_PACKAGE = "naev-data"
_NAEV_DAT = f"{NAEV_PACKAGE}/usr/share/naev/dat"
# A translatable Lua string: _([[long]]), _("double") or _('single').
_NAEV_LUA_STR = re.compile(
    r'\b_\(\s*(?:\[(=*)\[(.*?)\]\1\]|"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\')', re.S
)
_NAEV_NEWS = re.compile(
    r'tag\s*=\s*N?_\(\s*"((?:[^"\\]|\\.)*)"\s*\)\s*,\s*desc\s*=\s*_\(\s*"((?:[^"\\]|\\.)*)"', re.S
)
_NAEV_XML_TEXT = re.compile(r"<(description|bar)>(.*?)</\1>", re.S)
_NAEV_NAME = re.compile(r'<(?:asset|ssys) name="([^"]+)"')
_NAEV_TEMPLATING = re.compile(r"[{}]|%\S|\$\(|<[a-z/]")
_NAEV_COMM = re.compile(r"^\s*Comm [^>]{1,40}>\s*")  # a comm-channel speaker tag
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _lua_unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\'", "'").replace("\\n", "\n").replace("\\t", " ")


def _naev_filler(doc_id: str, names: list[str]):
    """The text cleaner of one document: fills printf placeholders (``%s`` with a planet or
    system name, ``%d`` with a number) from a generator seeded by the id, removes colour
    codes, and returns None for text with other templating."""
    rng = _seeded(doc_id)

    def fill(text: str) -> str | None:
        text = re.sub(r"#[a-zA-Z0]", "", text)
        text = re.sub(r"%(?:\d\$)?s", lambda m: rng.choice(names), text)
        text = re.sub(r"%(?:\d\$)?(?:\.\d)?[dfi]", lambda m: f"{rng.randint(2, 90)}", text)
        text = text.replace("%%", "%")
        if _NAEV_TEMPLATING.search(text):
            return None
        return normalize_ws(_NAEV_COMM.sub("", text))

    return fill


def naev(root: Path) -> Iterator[Doc]:
    """Naev 0.8 (GPL-3+): news, descriptions and mission text of the space-trading game.

    * ``dat/events/neutral/news.lua``: one document per news article (headline = title);
    * ``dat/assets``, ``dat/ships``, ``dat/outfits`` (XML): ``<description>`` and ``<bar>``
      texts, one document per file (title: its ``name``);
    * ``dat/missions``, ``dat/events`` (Lua): every translatable string, one document per
      file (title: the mission or event name): offers, briefings, dialogue, narration.

    Only prose paragraphs are kept, each once across the source.

    Raises:
        FileNotFoundError: If the news file or the planet/system files are missing.
    """
    dat = os.path.join(root, _NAEV_DAT)
    places = _glob(dat, "assets/*.xml", "Naev planets") + _glob(dat, "ssys/*.xml", "Naev systems")
    names = set()
    for path in sorted(places):
        with open(path, encoding="utf-8", errors="replace") as f:
            m = _NAEV_NAME.search(f.read(2000))
        if m and not m.group(1).startswith(("Virtual", "Test")):  # developer-only places
            names.add(m.group(1))
    name_list = sorted(names) or ["Caladan"]
    seen: set[str] = set()

    def keep(paras: Iterable[str | None]) -> list[str]:
        out = []
        for p in prose_paragraphs(p for p in paras if p):
            if p not in seen:
                seen.add(p)
                out.append(p)
        return out

    news = os.path.join(dat, "events/neutral/news.lua")
    for i, m in enumerate(_NAEV_NEWS.finditer(_read_text(news))):
        doc_id = f"naev/news/{i}"
        paras = keep([_naev_filler(doc_id, name_list)(_lua_unescape(m.group(2)))])
        if paras:
            yield {"id": doc_id, "title": _lua_unescape(m.group(1)), "paragraphs": paras}
    for sub in ("assets", "ships", "outfits"):
        for path in sorted(glob.glob(os.path.join(dat, sub, "**/*.xml"), recursive=True)):
            rel = os.path.relpath(path, dat)
            src = _read_text(path)
            m = re.search(r'name="([^"]+)"', src)
            fill = _naev_filler(rel, name_list)
            raw = [html.unescape(t) for _, t in _NAEV_XML_TEXT.findall(src)]
            paras = keep(fill(p) for t in raw for p in _PARAGRAPH_BREAK.split(t))
            if paras:
                yield {"id": f"naev/{rel}", "title": m.group(1) if m else "", "paragraphs": paras}
    for sub in ("missions", "events"):
        for path in sorted(glob.glob(os.path.join(dat, sub, "**/*.lua"), recursive=True)):
            if path == news:
                continue
            rel = os.path.relpath(path, dat)
            src = re.sub(r"^\s*--.*$", "", _read_text(path), flags=re.M)  # comment lines
            m = re.search(r'<(?:mission|event) name="([^"]+)"', src)
            fill = _naev_filler(rel, name_list)
            # long brackets are raw strings; quoted strings have escapes
            raw = [g[1] or _lua_unescape(g[2] or g[3]) for g in _NAEV_LUA_STR.findall(src)]
            paras = keep(fill(p) for t in raw for p in _PARAGRAPH_BREAK.split(t))
            if paras:
                yield {"id": f"naev/{rel}", "title": m.group(1) if m else "", "paragraphs": paras}


# ----------------------------------------------------------------------- FreedroidRPG
FREEDROIDRPG_PACKAGE = "freedroidrpg-data"
_FDRPG_DATA = f"{FREEDROIDRPG_PACKAGE}/usr/share/freedroidrpg/data"
# A dialogue line (Tux:says / Npc:says[_random]), a dialogue option (text = _"...") or the
# NPC's name (Npc:set_name). ``rest``: the line after the string (its format arguments).
_FDRPG_LINE = re.compile(
    r'(?P<who>Tux|Npc):says(?:_random)?\(\s*_\s*"(?P<said>(?:[^"\\]|\\.)*)"(?P<rest>[^\n]*)'
    r'|^\s*text\s*=\s*_\s*"(?P<opt>(?:[^"\\]|\\.)*)"'
    r'|Npc:set_name\("(?P<name>[^"]+)"\)',
    re.M,
)
_FDRPG_TITLE_STR = re.compile(
    r'text\s*=\s*_?\s*\[\[(.*?)\]\]|text\s*=\s*_\s*"((?:[^"\\]|\\.)*)"', re.S
)
_FDRPG_TEMPLATING = re.compile(r"%[sdi0-9]|\$\$|\{|\}")
_FDRPG_NOT_STORY = frozenset(  # title screens that are manuals, not narrative
    {"Credits.lua", "Controls.lua", "Contribute.lua", "TakeoverInstructions.lua"}
)
# Computer terminals: command menus, not dialogue.
_FDRPG_MACHINE = re.compile(r"^(Terminal|AfterTakeover|DSB-|.*[Tt]erminal)")


def _fdrpg_unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\n", "\n").replace("\\'", "'")


def _fdrpg_clean(text: str, rest: str = "") -> str | None:
    """A dialogue string without [b] markup; ``%s`` is the player's name (Tux) when the
    format argument says so; None if other placeholders are left or under 2 words."""
    text = re.sub(r"\[/?[a-z]+\]", "", _fdrpg_unescape(text))
    if "%s" in text and "get_player_name" in rest and text.count("%s") == 1:
        text = text.replace("%s", "Tux")
    if _FDRPG_TEMPLATING.search(text):
        return None
    text = normalize_ws(text)
    return text if len(text.split()) >= 2 else None


def _fdrpg_dialogs(data: str, speaker_prefix: bool) -> Iterator[Doc]:
    files = sorted(
        glob.glob(os.path.join(data, "storyline/*/dialogs/*.lua"))
        + glob.glob(os.path.join(data, "base/dialogs/*.lua"))
    )
    if not files:
        raise FileNotFoundError(f"no FreedroidRPG dialogs (*/dialogs/*.lua) under {data}")
    for path in files:
        src = re.sub(r"--\[\[WIKI.*?WIKI\]\]--", "", _read_text(path), flags=re.S)  # notes
        npc = os.path.splitext(os.path.basename(path))[0].replace("_", " ")
        paras = []
        for m in _FDRPG_LINE.finditer(src):
            if m.group("name"):
                npc = m.group("name")
                continue
            if m.group("who"):
                who = "Tux" if m.group("who") == "Tux" else npc
                p = _fdrpg_clean(m.group("said"), m.group("rest"))
            else:  # a dialogue option: Tux speaks it
                who, p = "Tux", _fdrpg_clean(m.group("opt"))
            if p:
                paras.append(f"{who}: {p}" if speaker_prefix else p)
        if paras:
            rel = os.path.relpath(path, data)
            yield {"id": f"freedroidrpg/{rel}", "title": npc, "paragraphs": paras}


def _fdrpg_titles(data: str) -> Iterator[Doc]:
    files = sorted(
        glob.glob(os.path.join(data, "base/titles/*.lua"))
        + glob.glob(os.path.join(data, "storyline/*/titles/*.lua"))
    )
    for path in files:
        if os.path.basename(path) in _FDRPG_NOT_STORY:
            continue
        paras = []
        for m in _FDRPG_TITLE_STR.finditer(_read_text(path)):
            for piece in _PARAGRAPH_BREAK.split(_fdrpg_unescape(m.group(1) or m.group(2) or "")):
                p = _fdrpg_clean(piece)
                if p and len(p.split()) >= 4:
                    paras.append(p)
        if paras:
            rel = os.path.relpath(path, data)
            title = os.path.basename(path)[: -len(".lua")]
            yield {"id": f"freedroidrpg/{rel}", "title": title, "paragraphs": paras}


def freedroidrpg(root: Path, speaker_prefix: bool = True) -> Iterator[Doc]:
    """FreedroidRPG 1.0 (GPL-2+): the intro/outro texts, then one document per NPC dialogue.

    Dialogue lines are kept in source order as ``"Speaker: line"`` (``Tux:says`` and the
    dialogue options: Tux; ``Npc:says``: the NPC, named by its file or ``Npc:set_name``);
    ``says_random`` keeps its first alternative. Computer terminals are left out.

    Args:
        root: Unpack root.
        speaker_prefix: Prefix dialogue lines with ``"Speaker: "``.

    Raises:
        FileNotFoundError: If the package has no dialogue files.
    """
    data = os.path.join(root, _FDRPG_DATA)
    yield from _fdrpg_titles(data)
    for doc in _fdrpg_dialogs(data, speaker_prefix):
        if not _FDRPG_MACHINE.match(os.path.basename(doc["id"])):
            yield doc


# ------------------------------------------------------------------------- Stellarium
STELLARIUM_PACKAGE = "stellarium-data"
_STEL_BASE = f"{STELLARIUM_PACKAGE}/usr/share/stellarium"
# Free licences of a sky culture's info.ini; the NC and ND variants are refused by _STEL_BAD.
_STEL_OK_LICENCE = re.compile(r"^\s*(GNU GPL|GPL|CC BY(-SA)? \d|CC BY-SA|CC0|public domain)", re.I)
_STEL_BAD = re.compile(r"\bNC\b|\bND\b|non-?commercial|no ?deriv", re.I)
_STEL_STOP = re.compile(
    r"external links|references|bibliography|sources|further reading|authors?", re.I
)
_STEL_CITATION = re.compile(r"\s*\[\d+(?:[,–-]\s*\d+)*\]")
STELLARIUM_LANDSCAPE_LICENCE = "GPL-2+ (package)"  # landscapes ship no licence of their own


class _StellariumParser(HTMLParser):
    """The first ``<h1>`` and the ``<p>`` texts of a description, up to a heading such as
    "References" or "External links" (after it only citations follow)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.paras: list[str] = []
        self._buf: list[str] | None = None  # the open <p>'s text
        self._head: str | None = None  # the open heading's text
        self._stopped = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open headings and paragraphs; ``<br>`` is a space."""
        if tag in ("h1", "h2", "h3", "h4"):
            self._head = ""
        elif tag == "p" and not self._stopped:
            self._buf = []
        elif tag == "br" and self._buf is not None:
            self._buf.append(" ")

    def handle_endtag(self, tag: str) -> None:
        """Close headings (the title, the stop heading) and paragraphs."""
        if tag in ("h1", "h2", "h3", "h4") and self._head is not None:
            heading = normalize_ws(self._head)
            if tag == "h1" and not self.title:
                self.title = heading
            if _STEL_STOP.fullmatch(heading):
                self._stopped = True
            self._head = None
        elif tag == "p" and self._buf is not None:
            self.paras.append(normalize_ws("".join(self._buf)))
            self._buf = None

    def handle_data(self, data: str) -> None:
        """Buffer heading and paragraph text."""
        if self._head is not None:
            self._head += data
        if self._buf is not None:
            self._buf.append(data)


def stellarium_licence(culture_dir: str) -> str:
    """The ``license`` of a sky culture's ``info.ini`` ("" if missing or unreadable)."""
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cp.read(os.path.join(culture_dir, "info.ini"), encoding="utf-8")
        return cp.get("info", "license", fallback="")
    except configparser.Error:
        return ""


def stellarium_licence_ok(licence: str) -> bool:
    """GPL, CC BY, CC BY-SA, CC0 or public domain, and neither NC nor ND."""
    return bool(_STEL_OK_LICENCE.match(licence)) and not _STEL_BAD.search(licence)


def stellarium(root: Path) -> Iterator[Doc]:
    """Stellarium 0.22: essays on how peoples named and used the stars, and landscapes.

    One document per ``description.en.utf8`` (HTML) of a sky culture whose own licence is
    free (see :func:`stellarium_licence_ok`; the NC/ND and unlicensed ones are skipped), then
    of each landscape (under the package's GPL-2+). Documents carry their licence as
    ``"license"``. Paragraphs: ``<p>`` text without citation marks, prose only.

    Raises:
        FileNotFoundError: If the package has no sky cultures.
    """
    base = os.path.join(root, _STEL_BASE)
    items = []
    for culture in _glob(base, "skycultures/*/", "Stellarium sky cultures"):
        licence = stellarium_licence(culture)
        if stellarium_licence_ok(licence):
            items.append((culture + "description.en.utf8", licence))
    for path in sorted(glob.glob(os.path.join(base, "landscapes/*/description.en.utf8"))):
        items.append((path, STELLARIUM_LANDSCAPE_LICENCE))
    for path, licence in items:
        if not os.path.exists(path):
            continue
        parser = _StellariumParser()
        parser.feed(_read_text(path))
        uncited = (_STEL_CITATION.sub("", p) for p in parser.paras)
        paras = prose_paragraphs(normalize_ws(p) for p in uncited if p)
        if paras:
            rel = os.path.relpath(os.path.dirname(path), base)
            yield {
                "id": f"stellarium/{rel}",
                "title": parser.title or os.path.basename(os.path.dirname(path)),
                "paragraphs": paras,
                "license": licence,
            }


# ---------------------------------------------------------------------------- Wesnoth
# The mainline campaigns of Battle for Wesnoth 1.16, one Debian package each.
WESNOTH_CAMPAIGNS = (
    "did", "dm", "dw", "ei", "httt", "l", "low", "nr", "sof", "sota", "sotbe", "thot", "trow",
    "tsg", "ttb", "utbs",
)  # fmt: skip
WESNOTH_PACKAGES = tuple(f"wesnoth-1.16-{c}" for c in WESNOTH_CAMPAIGNS)
_WML_BASE = "usr/share/games/wesnoth/1.16/data/campaigns"
# A translatable attribute (_ "..." with "" as the escaped quote), a tag that resets the
# speaker, or an unquoted speaker id.
_WML_ATTR = re.compile(
    r'^\s*(speaker|message|story|description|name)\s*=\s*(?:_\s*)?"((?:[^"]|"")*)"'
    r"|^\s*\[(message|part|/message|campaign|scenario)\]"
    r"|^\s*speaker\s*=\s*([A-Za-z][\w ]*?)\s*$",
    re.M,
)
_WML_MARKUP = re.compile(r"</?(?:i|b|span|small|big|bold|italic)[^>]*>")
_WML_TEMPLATING = re.compile(r"[{}$<>@]")  # macros, variables, leftover markup
_WML_NOT_SPEAKERS = frozenset({"narrator", "unit", "second_unit"})


def _wml_clean(text: str) -> str | None:
    text = _WML_MARKUP.sub("", html.unescape(text.replace('""', '"')))
    return None if _WML_TEMPLATING.search(text) else normalize_ws(text)


def wesnoth(root: Path, speaker_prefix: bool = True) -> Iterator[Doc]:
    """Battle for Wesnoth 1.16 campaigns (GPL-2+): one document per scenario or campaign file.

    In file order: ``[story]`` part narration, ``[message]`` dialogue (as ``"Speaker: line"``
    when the speaker is a named character: an id starting with a capital) and long
    ``description`` strings (campaign blurbs; objective one-liners under 10 words are
    skipped). Unit definitions are left out. The title is the file's first ``name``.
    Paragraphs are kept once across all campaigns.

    Args:
        root: Unpack root.
        speaker_prefix: Prefix dialogue with ``"Speaker: "``.

    Raises:
        FileNotFoundError: If a campaign package has no WML files.
    """
    seen: set[str] = set()
    for package in WESNOTH_PACKAGES:
        base = os.path.join(root, package, _WML_BASE)
        for path in _glob(base, "**/*.cfg", "Wesnoth campaign files"):
            if "/units/" in path:
                continue
            title, speaker, paras = "", None, []
            for m in _WML_ATTR.finditer(_read_text(path)):
                if m.group(3):
                    speaker = None
                    continue
                if m.group(4):
                    speaker = m.group(4)
                    continue
                key, value = m.group(1), m.group(2)
                if key == "speaker":
                    speaker = value
                    continue
                if key == "name":
                    if not title and value.strip():
                        title = normalize_ws(value)
                    continue
                if key == "description" and len(value.split()) < 10:
                    continue
                for piece in _PARAGRAPH_BREAK.split(value):
                    p = _wml_clean(piece)
                    if not p or len(p.split()) < 2:
                        continue
                    if (
                        key == "message"
                        and speaker_prefix
                        and speaker
                        and speaker[:1].isupper()
                        and speaker not in _WML_NOT_SPEAKERS
                    ):
                        p = f"{speaker.replace('_', ' ')}: {p}"
                    if p not in seen:
                        seen.add(p)
                        paras.append(p)
            if paras:
                rel = os.path.relpath(path, base)
                yield {"id": f"wesnoth/{rel}", "title": title, "paragraphs": paras}


# ---------------------------------------------------------------------------- Freeciv
FREECIV_PACKAGE = "freeciv-data"
_FREECIV_NATIONS = f"{FREECIV_PACKAGE}/usr/share/games/freeciv/nation"
_FREECIV_FIELD = re.compile(
    r'^(legend|plural|name)\s*=\s*_\(\s*(?:"\?[a-z]+:)?"?((?:[^"\\]|\\.)*)"\s*\)', re.M | re.S
)


def _freeciv_unescape(text: str) -> str:
    text = text.replace("\\\n", "")  # line continuation
    text = text.replace("?plural:", "").replace("?nation:", "")  # translation contexts
    return text.replace('\\"', '"').replace("\\'", "'").replace("\\n", "\n")


def freeciv_nations(root: Path) -> Iterator[Doc]:
    """Freeciv 3.0 (GPL-2+) nations: one document per nation, its legend as the paragraph.

    A legend is a short encyclopedic paragraph on a real or historical people; the title is
    the nation's plural name. Legends under 5 words are skipped. The rulesets' game help is
    left out (software-manual prose, which the corpus has plenty of).

    Raises:
        FileNotFoundError: If the package has no nation rulesets.
    """
    base = os.path.join(root, _FREECIV_NATIONS)
    for path in _glob(base, "*.ruleset", "Freeciv nation rulesets"):
        fields: dict[str, str] = {}
        for key, value in _FREECIV_FIELD.findall(_read_text(path)):
            fields.setdefault(key, _freeciv_unescape(value))
        legend = normalize_ws(fields.get("legend", ""))
        if len(legend.split()) >= 5:
            title = normalize_ws(fields.get("plural") or fields.get("name") or "")
            yield {
                "id": f"freeciv/nation/{os.path.basename(path)}",
                "title": re.sub(r"^\?[a-z]+:", "", title),
                "paragraphs": [legend],
            }

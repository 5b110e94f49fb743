"""Offline tests of ``lcm data build-corpus`` (no apt, no network: synthetic inputs only)."""

from __future__ import annotations

import gzip
import json
import struct
import textwrap
import zlib
from collections import Counter
from pathlib import Path

import pytest

from lcm.data.build_corpus import build as build_corpus
from lcm.data.build_corpus import debian_pairs, fetch, games, rdata, sources, sword, textutil
from lcm.data.build_corpus.writer import write_jsonl_gz
from lcm.text.heldout import HELDOUT_SOURCES


def _read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ---------------------------------------------------------------------------- textutil
def test_split_sentences_keeps_abbreviations_and_initials() -> None:
    text = 'Dr. Smith met J. R. Tolkien, e.g. at home. He left!  "Why?" she asked.'
    assert textutil.split_sentences(text) == [
        "Dr. Smith met J. R. Tolkien, e.g. at home.",
        "He left!",
        '"Why?" she asked.',  # no break before a lower-case word
    ]


def test_sentence_like_and_prose_paragraphs() -> None:
    assert textutil.is_sentence_like("This is a sentence.")
    assert not textutil.is_sentence_like("too short.")
    assert not textutil.is_sentence_like("lower case start is rejected.")
    assert textutil.is_prose_sentence("lower case start is fine here.")
    assert not textutil.is_sentence_like("x = f(1, 2) + g(3, 4) * 5 + 6.")
    paras = ["A real paragraph with a sentence.", "ls -la /tmp | grep foo", ""]
    assert textutil.prose_paragraphs(paras) == ["A real paragraph with a sentence."]


# ------------------------------------------------------------------------ debian pairs
def _stanza(**fields: str) -> str:
    return "\n".join(f"{k.replace('_', '-')}: {v}" for k, v in fields.items()) + "\n"


def _long(*lines: str) -> str:
    return "\n".join(" " + line for line in lines)


FOO_LONG = _long(
    "Foo is a fast tool for frobnicating widgets. It is written in C and works",
    "on every platform that matters.",
    ".",
    "Features include:",
    "  * speed",
    "  * more speed",
    ".",
    "This package contains the command line tool. Use it well.",
    "   verbatim code block",
)


def test_clean_long_description_drops_lists_verbatim_and_leadins() -> None:
    paras = debian_pairs.clean_long_description(FOO_LONG)
    assert paras == [
        "Foo is a fast tool for frobnicating widgets. It is written in C and works on every "
        "platform that matters.",
        "This package contains the command line tool. Use it well.",
    ]


def test_parse_stanzas_keeps_continuation_lines() -> None:
    text = "Package: a\nDescription: short\n line one\n .\n line two\n\nPackage: b\n"
    records = list(debian_pairs.parse_stanzas(text))
    assert records[0]["Description"] == "short\n line one\n .\n line two"
    assert records[1] == {"Package": "b"}


def _pairs_fixture() -> tuple[str, str]:
    avail, trans = [], []

    def add(pkg: str, short: str, long_: str, source: str | None = None) -> None:
        md5 = f"md5{len(avail)}"
        fields = {"Package": pkg, "Section": "utils", "Description": short}
        if source:
            fields["Source"] = f"{source} (1.0-1)"
        avail.append(_stanza(**fields, Description_md5=md5))
        trans.append(_stanza(Package=pkg, Description_md5=md5, Description_en=short) + long_)

    add("foo", "fast widget frobnicator", FOO_LONG)
    family = _long(
        "Libbar is a library that reads and writes bar files of every known version.",
        "It is small. It is well tested.",
    )
    add("libbar1", "bar library", family, source="libbar")
    add("libbar-dev", "bar library (dev files)", family + "\n .\n Extra words here.", "libbar")
    add("libbar", "bar library (source-named binary)", family, source="libbar")
    add("oldfoo", "transitional package", _long("Old. Gone. Away now."))
    add("short", "too short", _long("Only one sentence here."))
    add("cyrillic", "кириллица", _long("Это очень хороший пакет. Он очень хороший. Он лучший тут."))
    # 20 packages sharing one boilerplate sentence, which must then be removed
    for i in range(20):
        add(
            f"pkg{i:02d}",
            f"tool number {i}",
            _long(f"Tool {i} does thing {i} in a way unique to tool number {i}.")
            + "\n"
            + _long("It has a second sentence about item " + str(i) + ".")
            + "\n"
            + _long("It has a third sentence for tool " + str(i) + "."),
        )
    for i in range(20):
        add(
            f"bp{i:02d}",
            f"boilerplate {i}",
            _long(f"Widget {i} renders shapes number {i} quickly and well. It is fast.")
            + "\n"
            + _long(f"Widget {i} also paints. See the shared website for details."),
        )
    return "\n".join(avail), "\n\n".join(trans)


def test_build_pairs_filters_dedups_and_splits() -> None:
    avail, trans = _pairs_fixture()
    stats: Counter = Counter()
    records = debian_pairs.build_pairs(avail, [trans], stats)
    by_id = {r["id"]: r for r in records}

    assert [r["id"] for r in records] == sorted(by_id)
    assert list(records[0]) == [
        "id", "summary", "document", "source", "section", "n_sentences", "n_words", "split",
    ]  # fmt: skip
    foo = by_id["foo"]
    assert foo["summary"] == "fast widget frobnicator"
    assert foo["document"].split("\n\n")[1].startswith("This package contains")
    assert foo["n_sentences"] == 4 and foo["n_words"] == len(foo["document"].split())
    # family: one representative, the binary named like the source package
    assert "libbar" in by_id and "libbar1" not in by_id and "libbar-dev" not in by_id
    assert by_id["libbar"]["source"] == "libbar"
    # filters
    for skipped in ("oldfoo", "short", "cyrillic"):
        assert skipped not in by_id
    # boilerplate "It is fast." is in 20 docs, "See the shared..." too: both removed, which
    # leaves the bp* documents with only 2 sentences, so they are dropped
    assert stats["boilerplate_sentence_types"] >= 2
    assert not any(i.startswith("bp") for i in by_id)
    assert all(f"pkg{i:02d}" in by_id for i in range(20))
    # split follows the source package hash
    for r in records:
        assert r["split"] == debian_pairs.split_for(r["source"])


def test_split_for_is_a_stable_source_hash() -> None:
    assert debian_pairs.split_for("zeroinstall-injector") == "train"
    splits = [debian_pairs.split_for(f"src{i}") for i in range(2000)]
    assert 0.03 < splits.count("test") / 2000 < 0.07
    assert 0.03 < splits.count("valid") / 2000 < 0.07


# ------------------------------------------------------------------------------ writer
def test_write_jsonl_gz_is_atomic_and_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "x.docs.jsonl.gz"
    docs = [{"id": "a", "title": "é", "paragraphs": ["One."]}]
    assert write_jsonl_gz(out, docs) == 1
    first = out.read_bytes()
    assert _read_jsonl_gz(out) == docs
    assert gzip.decompress(first).decode() == '{"id": "a", "title": "é", "paragraphs": ["One."]}\n'
    write_jsonl_gz(out, docs)
    assert out.read_bytes() == first  # no timestamp in the gzip header

    def failing():
        yield {"id": "b", "title": "", "paragraphs": []}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl_gz(out, failing())
    assert out.read_bytes() == first  # the old file survives a failed write
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left


# ------------------------------------------------------------------------------- sword
def _make_sword_module(moddir: Path, entries: list[bytes]) -> None:
    """Write a zText module: one zlib block with all entries, 10-byte verse records."""
    moddir.mkdir(parents=True)
    block = b"".join(entries)
    compressed = zlib.compress(block)
    (moddir / "nt.bzz").write_bytes(compressed)
    (moddir / "nt.bzs").write_bytes(struct.pack("<III", 0, len(compressed), len(block)))
    index, offset = [], 0
    for entry in entries:
        index.append(struct.pack("<IIH", 0, offset, len(entry)))
        offset += len(entry)
    index.insert(1, struct.pack("<IIH", 0, 0, 0))  # an empty slot, as modules have
    (moddir / "nt.bzv").write_bytes(b"".join(index))


def test_sword_reader_and_bible_chapters(tmp_path: Path) -> None:
    entries = [
        b'<chapter osisID="Matt.1" sID="c1"/>In the beginning was the Word.'
        b'<note type="x">a footnote</note>',
        b"And the Word was with God , and the Word was God.",
        b'<chapter osisID="Matt.2" sID="c2"/><title>Heading</title>Jesus wept.',
    ]
    mod = tmp_path / "sword-text-web/usr/share/sword/modules/texts/ztext/web"
    _make_sword_module(mod, entries)
    raw = [r for _, _, r in sword.iter_entries(mod)]
    assert len(raw) == 3 and raw[1].startswith("And the Word")
    assert sword.strip_markup(entries[1].decode()) == (
        "And the Word was with God, and the Word was God."
    )
    docs = list(sources.SOURCES["bible_web"].extract(tmp_path))
    assert docs == [
        {
            "id": "web/1",
            "title": "",
            "paragraphs": [
                "In the beginning was the Word. And the Word was with God, and the Word was God."
            ],
        },
        {"id": "web/2", "title": "", "paragraphs": ["Jesus wept."]},
    ]


# ------------------------------------------------------------------------ dict, wordnet
def _b64(n: int) -> str:
    digits = ""
    while True:
        digits = sources._B64[n % 64] + digits
        n //= 64
        if not n:
            return digits


def _make_dictd(root: Path, name: str, articles: dict[str, str]) -> None:
    base = root / f"dict-{name}/usr/share/dictd"
    base.mkdir(parents=True)
    data, index = b"", ["00databaseinfo\tA\tB"]
    for word, text in articles.items():
        raw = text.encode()
        index.append(f"{word}\t{_b64(len(data))}\t{_b64(len(raw))}")
        data += raw
    (base / f"{name}.dict.dz").write_bytes(gzip.compress(data))
    (base / f"{name}.index").write_text("\n".join(index) + "\n")


def test_dict_source_and_gcide_quotes(tmp_path: Path) -> None:
    _make_dictd(
        tmp_path,
        "devil",
        {
            "ABSURDITY": "ABSURDITY\n  A statement of belief manifestly {inconsistent} with"
            " one's own opinion.\n\n  x\n",
            "NOPE": "NOPE\n  not prose at all\n",
        },
    )
    docs = list(sources.dict_source("devil")(tmp_path))
    assert docs == [
        {
            "id": "devil/ABSURDITY",
            "title": "ABSURDITY",
            "paragraphs": ["A statement of belief manifestly inconsistent with one's own opinion."],
        }
    ]
    _make_dictd(
        tmp_path,
        "gcide",
        {
            "Abide": "Abide \\A*bide\\, v. i. To rest.\n"
            "           Let me abide here with you for a\n"
            "           little while.                --Shak.\n"
            "           Too short.                   --Shak.\n",
        },
    )
    quotes = list(sources.gcide_quotes(tmp_path))
    assert quotes == [
        {
            "id": "gcide-quote/Abide/1",
            "title": "Shak.",
            "paragraphs": ["Let me abide here with you for a little while."],
        }
    ]


def test_wordnet_glosses(tmp_path: Path) -> None:
    path = tmp_path / "wordnet-base/usr/share/wordnet/data.noun"
    path.parent.mkdir(parents=True)
    for pos in ("verb", "adj", "adv"):
        (path.parent / f"data.{pos}").write_text("  1 license header\n")
    path.write_text(
        "  1 This software and database is being provided\n"
        '00001740 03 n 01 physical_entity 0 000 | a thing that exists; "rocks are physical'
        ' entities"  \n'
    )
    assert list(sources.wordnet(tmp_path)) == [
        {
            "id": "wn/noun/00001740",
            "title": "physical entity",
            "paragraphs": [],
            "definitions": ["a thing that exists"],
            "examples": ["rocks are physical entities"],
        }
    ]


# -------------------------------------------------------------------- HTML, man, fortune
def test_html_source_keeps_prose_paragraphs_only(tmp_path: Path) -> None:
    page = tmp_path / "pkg/usr/share/doc/pkg/html/a.html"
    page.parent.mkdir(parents=True)
    page.write_text(
        "<html><head><title>The  Title</title></head><body>"
        "<nav><p>Skip this navigation paragraph here.</p></nav>"
        "<p>First paragraph has <b>bold</b> text.<br>It continues here.</p>"
        "<pre>code = 1  # Not a paragraph at all.</pre>"
        '<div class="para">A DocBook paragraph is kept too.</div>'
        "<p>no sentence</p></body></html>"
    )
    (page.parent / "genindex.html").write_text("<p>Index page is excluded here.</p>")
    extract = sources.html_source("pkg/usr/share/doc/pkg/html/**/*.html", "genindex")
    assert list(extract(tmp_path)) == [
        {
            "id": "pkg/usr/share/doc/pkg/html/a.html",
            "title": "The Title",
            "paragraphs": [
                "First paragraph has bold text. It continues here.",
                "A DocBook paragraph is kept too.",
            ],
        }
    ]


def test_man_paragraphs() -> None:
    source = (
        ".TH LS 1\n.SH NAME\nls \\- list\n.SH DESCRIPTION\n.B ls\nlists \\fBfiles\\fR in a"
        "\ndirectory.\n.PP\nSecond paragraph.\n"
    )
    assert sources.man_paragraphs(source) == [
        "ls list",
        "ls lists files in a directory.",
        "Second paragraph.",
    ]


def test_fortunes(tmp_path: Path) -> None:
    d = tmp_path / "fortunes/usr/share/games/fortunes"
    d.mkdir(parents=True)
    (d / "wisdom").write_text("Be kind.\n\t-- Someone\n%\nTwo\nlines.\n%\n")
    (d / "wisdom.dat").write_bytes(b"\0\1")
    (d / "art").write_text("  /\\_/\\\n%\n")
    docs = list(sources.fortunes(tmp_path))
    assert [d["paragraphs"] for d in docs] == [["Be kind."], ["Two lines."]]
    assert docs[0]["id"] == "fortune/wisdom/0" and docs[0]["title"] == "wisdom"


# ------------------------------------------------------------------ game and data packages
def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_endless_sky(tmp_path: Path) -> None:
    data = "endless-sky-data/usr/share/games/endless-sky/data"
    _write(
        tmp_path,
        f"{data}/map.txt",
        'planet "Blue Harbor"\n'
        "\tattributes ocean\n"
        "\tdescription `Blue Harbor is a quiet ocean world with floating towns.`\n"
        "\tspaceport `The spaceport rises on stilts above the waves.`\n"
        "\tspaceport `\tDock workers sing while they unload cargo.`\n"
        "\n"
        "system Sol\n"
        "\tpos 0 0\n",
    )
    _write(
        tmp_path,
        f"{data}/missions.txt",
        "# a comment line\n"
        'mission "First Job"\n'
        '\tdescription "Bring the sealed crate to <destination> before the storm."\n'
        "\tnpc\n"
        '\t\tdescription "An escort ship that is only a tag line."\n'
        "\ton offer\n"
        "\t\tconversation\n"
        "\t\t\t`You meet a trader at the bar on <origin>.`\n"
        "\t\t\tchoice\n"
        '\t\t\t\t`\t"I will take the job."`\n'
        "\t\t\t\t\tgoto yes\n"
        '\t\t\t\t`\t"No, thank you, not today."`\n'
        "\t\t\t\t\tdecline\n"
        "\t\t\tlabel yes\n"
        "\t\t\t`\tShe pays you <credits> in advance.`\n"  # an unknown tag: dropped
        "\t\t\t`\tYou shake hands on <planet>.`\n"
        'ship "Tiny Boat"\n'
        '\tdescription "Fast."\n'  # under 3 words
        '\tdescription "Blue Harbor is a quiet ocean world with floating towns."\n'  # repeat
        '\tdescription "The Tiny Boat carries two people and a dog."\n',
    )
    # one planet and one system: every placeholder above has a single possible fill
    assert list(games.endless_sky(tmp_path)) == [
        {
            "id": "endless-sky/map.txt/planet/Blue Harbor",
            "title": "Blue Harbor",
            "paragraphs": [
                "Blue Harbor is a quiet ocean world with floating towns.",
                "The spaceport rises on stilts above the waves.",
                "Dock workers sing while they unload cargo.",
            ],
        },
        {
            "id": "endless-sky/missions.txt/mission/First Job",
            "title": "First Job",
            "paragraphs": [
                "Bring the sealed crate to Blue Harbor in the Sol system before the storm.",
                "You meet a trader at the bar on Blue Harbor.",
                '"I will take the job."',  # the first option of the choice only
                "You shake hands on Blue Harbor.",
            ],
        },
        {
            "id": "endless-sky/missions.txt/ship/Tiny Boat",
            "title": "Tiny Boat",
            "paragraphs": ["The Tiny Boat carries two people and a dog."],
        },
    ]
    _write(tmp_path, f"{data}/bad.txt", '\tdescription "An orphan line of text here."\n')
    with pytest.raises(ValueError, match=r"bad\.txt: indented line before any top-level"):
        list(games.endless_sky(tmp_path))


def test_cataclysm(tmp_path: Path) -> None:
    base = "cataclysm-dda-data/usr/share/games/cataclysm-dda/json"
    items = [
        {
            "type": "TOOL",
            "id": "flashlight",
            "name": {"str": "flashlight"},
            "description": "A <color_yellow>battery</color> powered light for dark nights.\n"
            "It is a bit dented.",
        },
        {
            "type": "MONSTER",
            "id": "mon_x",
            "name": "zombie",
            "description": "Short one.",
            "//": "A developer comment, not prose for players.",
        },
    ]
    talk = {
        "type": "talk_topic",
        "id": "TALK_X",
        "dynamic_line": "It is a bit dented.",  # already seen: dropped
        "responses": [{"text": "Where are you going, %s?"}, {"text": "I need food and water."}],
    }
    snippets = [
        {
            "type": "snippet",
            "category": "note",
            "text": [
                {"id": "note_mill", "text": "Meet me at the old mill after dark."},
                "You have <npc_name> in your debt now.",
            ],
        }
    ]
    _write(tmp_path, f"{base}/items/tools.json", json.dumps(items))
    _write(tmp_path, f"{base}/npcs/talk.json", json.dumps(talk))
    _write(tmp_path, f"{base}/snippets.json", json.dumps(snippets))
    assert list(games.cataclysm(tmp_path)) == [
        {
            "id": "cdda/items/tools.json/TOOL/flashlight",
            "title": "flashlight",
            "paragraphs": ["A battery powered light for dark nights.", "It is a bit dented."],
        },
        {
            "id": "cdda/npcs/talk.json/talk_topic/TALK_X",
            "title": "",
            "paragraphs": ["I need food and water."],
        },
        {
            "id": "cdda/snippets.json/note/note_mill",
            "title": "note",
            "paragraphs": ["Meet me at the old mill after dark."],
        },
    ]
    _write(tmp_path, f"{base}/broken.json", "[{")
    with pytest.raises(ValueError, match=r"broken\.json: not valid UTF-8 JSON"):
        list(games.cataclysm(tmp_path))


def test_naev(tmp_path: Path) -> None:
    dat = "naev-data/usr/share/naev/dat"
    _write(
        tmp_path,
        f"{dat}/assets/blue.xml",
        '<?xml version="1.0"?>\n<asset name="Blue Harbor">\n <general>\n'
        "  <description>Blue Harbor is a quiet ocean world.\n\n"
        "Its people fish &amp; farm kelp.</description>\n"
        "  <bar>The bar smells of salt and engine oil.</bar>\n </general>\n</asset>\n",
    )
    _write(tmp_path, f"{dat}/ssys/test.xml", '<ssys name="Test of Stars">\n</ssys>\n')
    _write(
        tmp_path,
        f"{dat}/ships/boat.xml",
        '<ship name="Tiny Boat">\n <description>The Tiny Boat carries two people and a dog.'
        "</description>\n</ship>\n",
    )
    _write(
        tmp_path,
        f"{dat}/events/neutral/news.lua",
        'articles = {\n   { tag = N_("Pirates Strike Again"), '
        'desc = _("Pirates raided a convoy near %s yesterday.") },\n}\n',
    )
    _write(
        tmp_path,
        f"{dat}/missions/neutral/cargo.lua",
        '--[[\n<mission name="Cargo Run">\n</mission>\n--]]\n'
        "local text = _([[You meet a trader at the bar on %s.\n\n"
        '"I will take the job," you say.]])\n'
        'local bad = _("Pay {credits} now, captain.")\n'
        'local short = _("Yes.")\n'
        '-- local old = _("A commented-out line is ignored here.")\n'
        'local hello = _("#pHello#0, captain. The cargo is ready.")\n',
    )
    # "Test ..." places are developer-only, so %s has one possible fill: Blue Harbor
    assert list(games.naev(tmp_path)) == [
        {
            "id": "naev/news/0",
            "title": "Pirates Strike Again",
            "paragraphs": ["Pirates raided a convoy near Blue Harbor yesterday."],
        },
        {
            "id": "naev/assets/blue.xml",
            "title": "Blue Harbor",
            "paragraphs": [
                "Blue Harbor is a quiet ocean world.",
                "Its people fish & farm kelp.",
                "The bar smells of salt and engine oil.",
            ],
        },
        {
            "id": "naev/ships/boat.xml",
            "title": "Tiny Boat",
            "paragraphs": ["The Tiny Boat carries two people and a dog."],
        },
        {
            "id": "naev/missions/neutral/cargo.lua",
            "title": "Cargo Run",
            "paragraphs": [
                "You meet a trader at the bar on Blue Harbor.",
                '"I will take the job," you say.',
                "Hello, captain. The cargo is ready.",
            ],
        },
    ]


def test_freedroidrpg(tmp_path: Path) -> None:
    data = "freedroidrpg-data/usr/share/freedroidrpg/data"
    _write(
        tmp_path,
        f"{data}/storyline/act1/dialogs/Bender.lua",
        textwrap.dedent(
            """\
            --[[WIKI
            RELATIONSHIP = {
                text = _"This design note is not dialogue.",
            }
            WIKI]]--
            return {
                FirstTime = function()
                    Npc:set_name("Bender - Bodybuilder")
                    Tux:says(_"Hello there.")
                    Npc:says(_"Hi, %s! Nice to meet you.", Tux:get_player_name())
                    Npc:says(_"I have %d credits.", 5)
                end,
                {
                    id = "node0",
                    text = _"What happened to you?",
                    code = function()
                        Npc:says_random(_"I ate a [b]strange[/b] mushroom.", _"Never mind.")
                    end,
                },
            }
            """
        ),
    )
    _write(  # a computer terminal: a command menu, not dialogue
        tmp_path,
        f"{data}/storyline/act1/dialogs/Terminal_Lab.lua",
        'Tux:says(_"Open the lab door now.")\n',
    )
    _write(
        tmp_path,
        f"{data}/base/titles/StartOfGame.lua",
        'title_screen{\nsong = "Bleostrada.ogg",\ntext = _[[The year is 2345.\n\nHello.\n\n'
        "Tux wakes up in a cryogenic chamber and remembers nothing.]]\n}\n",
    )
    _write(
        tmp_path,
        f"{data}/base/titles/Credits.lua",
        "title_screen{\ntext = _[[Many people made this game possible.]]\n}\n",
    )
    start = {
        "id": "freedroidrpg/base/titles/StartOfGame.lua",
        "title": "StartOfGame",
        "paragraphs": [
            "The year is 2345.",
            "Tux wakes up in a cryogenic chamber and remembers nothing.",
        ],
    }
    lines = [
        "Hello there.",
        "Hi, Tux! Nice to meet you.",
        "What happened to you?",
        "I ate a strange mushroom.",
    ]
    speakers = ["Tux", "Bender - Bodybuilder", "Tux", "Bender - Bodybuilder"]
    bender = {
        "id": "freedroidrpg/storyline/act1/dialogs/Bender.lua",
        "title": "Bender - Bodybuilder",
        "paragraphs": [f"{who}: {line}" for who, line in zip(speakers, lines)],
    }
    assert list(games.freedroidrpg(tmp_path)) == [start, bender]
    plain = list(games.freedroidrpg(tmp_path, speaker_prefix=False))
    assert plain[1]["paragraphs"] == lines


def test_stellarium(tmp_path: Path) -> None:
    base = "stellarium-data/usr/share/stellarium"
    _write(
        tmp_path,
        f"{base}/skycultures/norse/info.ini",
        "[info]\nname = Norse\nlicense = CC BY-SA 4.0\n",
    )
    _write(
        tmp_path,
        f"{base}/skycultures/norse/description.en.utf8",
        "<h1>Norse Sky</h1>\n<p>The Norse named the stars after gods [1] and animals.<br>"
        "Sailors used them to steer.</p>\n<p>Stars: 12</p>\n<h2>References</h2>\n"
        "<p>Someone wrote a book about the stars in Oslo.</p>\n",
    )
    _write(  # a non-commercial licence: skipped
        tmp_path,
        f"{base}/skycultures/secret/info.ini",
        "[info]\nlicense = CC BY-NC-SA 4.0\n",
    )
    _write(
        tmp_path,
        f"{base}/skycultures/secret/description.en.utf8",
        "<h1>Secret</h1><p>This essay may not be used commercially.</p>",
    )
    _write(
        tmp_path,
        f"{base}/landscapes/garden/description.en.utf8",
        "<h2>Garden</h2><p>A quiet garden with a view of the hills.</p>",
    )
    assert list(games.stellarium(tmp_path)) == [
        {
            "id": "stellarium/skycultures/norse",
            "title": "Norse Sky",
            "paragraphs": [
                "The Norse named the stars after gods and animals. Sailors used them to steer."
            ],
            "license": "CC BY-SA 4.0",
        },
        {
            "id": "stellarium/landscapes/garden",
            "title": "garden",
            "paragraphs": ["A quiet garden with a view of the hills."],
            "license": games.STELLARIUM_LANDSCAPE_LICENCE,
        },
    ]


def test_wesnoth(tmp_path: Path) -> None:
    for campaign in games.WESNOTH_CAMPAIGNS:  # every campaign package is needed
        _write(
            tmp_path,
            f"wesnoth-1.16-{campaign}/usr/share/games/wesnoth/1.16/data/campaigns/"
            f"{campaign.upper()}/_main.cfg",
            f'[campaign]\n    name= _ "Campaign {campaign}"\n[/campaign]\n',
        )
    did = "wesnoth-1.16-did/usr/share/games/wesnoth/1.16/data/campaigns/DID"
    _write(
        tmp_path,
        f"{did}/_main.cfg",
        '[campaign]\n    name= _ "Descent into Darkness"\n'
        '    description= _ "A young mage turns to dark magic to save his people from the orcs."'
        "\n[/campaign]\n",
    )
    _write(
        tmp_path,
        f"{did}/scenarios/01_Snowy_Encounter.cfg",
        textwrap.dedent(
            """\
            #textdomain wesnoth-did
            [scenario]
                id=01_Snowy_Encounter
                name= _ "Snowy Encounter"
                [story]
                    [part]
                        story= _ "The snow fell on the village of Parthyn.

            The orcs came at dawn."
                    [/part]
                [/story]
                [message]
                    speaker=Malin_Keshar
                    message= _ "They are coming! We must warn the ""elders"" now."
                [/message]
                [message]
                    speaker=narrator
                    message= _ "Night falls over the valley."
                [/message]
                [message]
                    speaker=unit
                    message= _ "Hold the line, $unit.name|!"
                [/message]
                [objectives]
                    description= _ "Defeat the orcs"
                [/objectives]
            [/scenario]
            """
        ),
    )
    _write(  # unit definitions are left out
        tmp_path,
        f"{did}/units/Shade.cfg",
        '[unit_type]\n    description= _ "A shade is the ghost of a mage who died in anger."\n'
        "[/unit_type]\n",
    )
    assert list(games.wesnoth(tmp_path)) == [
        {
            "id": "wesnoth/DID/_main.cfg",
            "title": "Descent into Darkness",
            "paragraphs": ["A young mage turns to dark magic to save his people from the orcs."],
        },
        {
            "id": "wesnoth/DID/scenarios/01_Snowy_Encounter.cfg",
            "title": "Snowy Encounter",
            "paragraphs": [
                "The snow fell on the village of Parthyn.",
                "The orcs came at dawn.",
                'Malin Keshar: They are coming! We must warn the "elders" now.',
                "Night falls over the valley.",
            ],
        },
    ]
    for path in tmp_path.glob("wesnoth-1.16-utbs/**/*.cfg"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="no Wesnoth campaign files .*/wesnoth-1.16-utbs/"):
        list(games.wesnoth(tmp_path))


def test_freeciv_nations(tmp_path: Path) -> None:
    nation = "freeciv-data/usr/share/games/freeciv/nation"
    _write(
        tmp_path,
        f"{nation}/danish.ruleset",
        '[nation_danish]\n\nname=_("Danish")\nplural=_("?plural:Danes")\n'
        'groups="Modern", "Medieval"\n'
        'legend=_("The founding of the Danish kingdom is assigned to the\\\n'
        ' reign of Harald \\"Bluetooth\\".")\n',
    )
    _write(tmp_path, f"{nation}/tiny.ruleset", 'name=_("Tiny")\nlegend=_("Too short.")\n')
    assert list(games.freeciv_nations(tmp_path)) == [
        {
            "id": "freeciv/nation/danish.ruleset",
            "title": "Danes",
            "paragraphs": [
                'The founding of the Danish kingdom is assigned to the reign of Harald "Bluetooth".'
            ],
        }
    ]
    with pytest.raises(FileNotFoundError, match="no Freeciv nation rulesets"):
        list(games.freeciv_nations(tmp_path / "elsewhere"))


# ------------------------------------------------------------------------------ R data
def _xdr_int(*values: int) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def _r_chars(s: str | None) -> bytes:
    if s is None:
        return _xdr_int(9, -1)
    raw = s.encode()
    return _xdr_int(9 | (1 << 15), len(raw)) + raw  # UTF-8 flag in the levels


def _r_str(values: list[str | None]) -> bytes:
    return _xdr_int(16, len(values)) + b"".join(map(_r_chars, values))


def _r_names_attr(names: list[str], first_use: bool) -> bytes:
    # pairlist(names = c(...)); the "names" symbol is written once, then referenced
    tag = _xdr_int(1) + _r_chars("names") if first_use else _xdr_int((1 << 8) | 255)
    return _xdr_int(2 | (1 << 10)) + tag + _r_str(names) + _xdr_int(254)


def _r_named_list(items: dict[str, bytes], first_use: bool) -> bytes:
    body = b"".join(items.values())
    return _xdr_int(19 | (1 << 9), len(items)) + body + _r_names_attr(list(items), first_use)


def _r_serialize(item: bytes) -> bytes:
    return b"X\n" + _xdr_int(2, 0x040200, 0x020300) + item


def _make_lazyload(prefix: Path, datasets: dict[str, bytes]) -> None:
    prefix.parent.mkdir(parents=True)
    rdb, offsets = b"", {}
    for name, item in datasets.items():
        raw = _r_serialize(item)
        entry = struct.pack(">I", len(raw)) + zlib.compress(raw)
        offsets[name] = _xdr_int(13, 2, len(rdb), len(entry))
        rdb += entry
    variables = _r_named_list(offsets, first_use=True)
    index = _xdr_int(19 | (1 << 9), 1) + variables + _r_names_attr(["variables"], False)
    prefix.with_suffix(".rdx").write_bytes(gzip.compress(_r_serialize(index)))
    prefix.with_suffix(".rdb").write_bytes(rdb)


def test_rdata_lazy_load_and_austen_chapters(tmp_path: Path) -> None:
    lines = [
        "EMMA", "", "CHAPTER I", "", "Emma Woodhouse, handsome, clever,", "and rich.", "",
        "Second paragraph.", None, "CHAPTER II", "", "Short chapter.",
    ]  # fmt: skip
    prefix = tmp_path / "r-cran-janeaustenr/usr/lib/R/site-library/janeaustenr/data/Rdata"
    datasets = {
        "emma": _r_str(lines),
        "ints": _xdr_int(13, 3, 1, -(2**31), 3),
        "persuasion": _r_str(["Chapter 1", "Held out of the corpus on purpose."]),
    }
    _make_lazyload(prefix, datasets)
    data = rdata.load_lazy(prefix)
    assert list(data) == ["emma", "ints", "persuasion"]
    assert data["emma"][:3] == ["EMMA", "", "CHAPTER I"] and data["emma"][8] is None
    assert data["ints"] == [1, None, 3]
    docs = list(sources.austen(tmp_path))
    assert docs == [
        {
            "id": "austen/emma/1",
            "title": "CHAPTER I",
            "paragraphs": ["Emma Woodhouse, handsome, clever, and rich.", "Second paragraph."],
        },
        {"id": "austen/emma/2", "title": "CHAPTER II", "paragraphs": ["Short chapter."]},
    ]


def test_rdata_rejects_non_xdr() -> None:
    with pytest.raises(rdata.RFormatError):
        rdata.unserialize(b"A\n1\n")


# ------------------------------------------------------------------------- fetch, CLI
def test_missing_debian_tools_give_a_clear_error(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(fetch.shutil, "which", lambda tool: None)
    assert build_corpus.main(["--out", str(tmp_path), "--sources", "devil"]) == 1
    err = capsys.readouterr().err
    assert "apt-get" in err and "dpkg-deb" in err and "Debian" in err


def test_download_failure_names_the_package(monkeypatch, tmp_path: Path) -> None:
    ws = fetch.AptWorkspace(tmp_path)

    def fake_run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
        packages = cmd[cmd.index("download") + 1 :]
        if "no-such-pkg" in packages:
            raise fetch.BuildError(f"{what} failed:\nE: Unable to locate package no-such-pkg")
        for p in packages:
            (cwd / f"{p}_1.0_all.deb").write_bytes(b"")

    monkeypatch.setattr(fetch, "_run", fake_run)
    with pytest.raises(fetch.BuildError, match="'no-such-pkg'"):
        ws.download(["dict-devil", "no-such-pkg"])
    assert (ws.deb_dir / "dict-devil_1.0_all.deb").exists()  # the good one came through


def test_cli_rejects_unknown_sources_and_conflicting_modes(capsys) -> None:
    with pytest.raises(SystemExit):
        build_corpus.main(["--sources", "devil,nonsense"])
    assert "nonsense" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_corpus.main(["--pairs-only", "--corpus-only"])


def test_every_source_is_registered_with_packages() -> None:
    # the 26 sources of the shared data folder and the 7 game/data packages of issue 21
    assert len(sources.SOURCES) == 33
    for name, source in sources.SOURCES.items():
        assert source.name == name and source.packages and source.license
    assert {n for n, s in sources.SOURCES.items() if s.heldout} == HELDOUT_SOURCES
    assert len(sources.SOURCES["wesnoth"].packages) == 16


def test_summary_marks_heldout_sources() -> None:
    table = build_corpus._summary_table({"naev": 3, "wesnoth": 2}, None).splitlines()
    assert build_corpus.HELDOUT_NOTE not in table[1] and table[1].startswith("naev")
    assert table[2].startswith("wesnoth") and table[2].endswith(f"[{build_corpus.HELDOUT_NOTE}]")


def test_prepare_puts_heldout_sources_into_test_only(tmp_path: Path) -> None:
    from encoders.data import prepare  # the codec's data step (imports numpy, jax)

    corpus = tmp_path / "corpus"
    docs = [
        {"id": f"d{i}", "paragraphs": [f"Sentence number {i} of the {{}} source is here."]}
        for i in range(40)
    ]
    for source in ("naev", "wesnoth", "freeciv_nations"):
        records = [{**d, "paragraphs": [d["paragraphs"][0].format(source)]} for d in docs]
        write_jsonl_gz(corpus / f"{source}.docs.jsonl.gz", records)
    tokenizer = Path(__file__).resolve().parents[1] / "encoders/default/tokenizer.model"
    manifest = prepare(
        str(corpus),
        str(tmp_path / "out"),
        holdout_sources=(),  # asks for no held-out source: the unseen-domain ones still are
        valid_fraction=0.3,
        test_fraction=0.3,
        tokenizer_path=str(tokenizer),
    )
    per_source = manifest["per_source"]
    for source in HELDOUT_SOURCES:
        assert per_source[source] == {"train": 0, "valid": 0, "test": 40, "train_mixture": 0}
    assert per_source["naev"]["train"] > 0 and per_source["naev"]["valid"] > 0
    assert set(manifest["settings"]["holdout_sources"]) == HELDOUT_SOURCES
    train = (tmp_path / "out/train.txt").read_text()
    assert "wesnoth" not in train and "freeciv_nations" not in train


def test_main_end_to_end_with_a_fake_apt(monkeypatch, capsys, tmp_path: Path) -> None:
    """Run the whole CLI on synthetic apt data: pairs + one corpus source + cleanup."""
    avail, trans = _pairs_fixture()
    out, work = tmp_path / "out", tmp_path / "work"
    trans_file = tmp_path / "deb.debian.org_debian_dists_bookworm_main_i18n_Translation-en"
    trans_file.write_text(trans)
    _make_dictd(work / "x", "devil", {"ABSURDITY": "ABSURDITY\n  A statement of belief, absurd.\n"})
    (work / "unrelated.txt").write_text("user data next to the work dirs must survive")

    monkeypatch.setattr(fetch, "require_tools", lambda *tools: None)
    monkeypatch.setattr(fetch.AptWorkspace, "update", lambda self: None)
    monkeypatch.setattr(fetch.AptWorkspace, "codenames", lambda self: {"bookworm"})
    monkeypatch.setattr(fetch.AptWorkspace, "dumpavail", lambda self: avail)
    monkeypatch.setattr(fetch.AptWorkspace, "translation_files", lambda self: [trans_file])
    monkeypatch.setattr(fetch.AptWorkspace, "download", lambda self, packages: [])
    monkeypatch.setattr(fetch.AptWorkspace, "unpack", lambda self, package: None)

    argv = ["--out", str(out), "--work", str(work), "--sources", "devil"]
    assert build_corpus.main(argv) == 0
    pairs = _read_jsonl_gz(out / "pairs" / build_corpus.PAIRS_FILE)
    assert {p["id"] for p in pairs} >= {"foo", "libbar"}
    assert _read_jsonl_gz(out / "corpus" / "devil.docs.jsonl.gz") == [
        {
            "id": "devil/ABSURDITY",
            "title": "ABSURDITY",
            "paragraphs": ["A statement of belief, absurd."],
        }
    ]
    captured = capsys.readouterr()
    assert "[1/1] devil: 1 docs" in captured.err
    assert "devil" in captured.out and "debian pairs" in captured.out
    # the build's own dirs are removed, the user's file is not
    assert not (work / "x").exists() and (work / "unrelated.txt").exists()

"""Offline tests of ``lcm data build-corpus`` (no apt, no network: synthetic inputs only)."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest

from lcm.data.build_corpus import build as build_corpus
from lcm.data.build_corpus import debian_pairs, fetch, rdata, sources, sword, textutil
from lcm.data.build_corpus.writer import write_jsonl_gz


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
    assert len(sources.SOURCES) == 26  # the sources of the shared data folder
    for name, source in sources.SOURCES.items():
        assert source.name == name and source.packages and source.license


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

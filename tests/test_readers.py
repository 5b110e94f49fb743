"""Streaming readers: formats, the pairs fixture, and bad input (skip+count or raise)."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest
from conftest import REPO

from lcm.text.readers import DataError, Document, ReadStats, iter_documents, read_documents

FIXTURES = REPO / "tests" / "fixtures"


def _write(path: Path, data: bytes) -> Path:
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def test_text_file_is_one_document_with_paragraphs(tmp_path: Path) -> None:
    p = _write(tmp_path / "notes.txt", b"\xef\xbb\xbfFirst para\nline two.\n\n\n  \nSecond.\r\n")
    stats = ReadStats()
    docs = list(read_documents(p, stats=stats))
    assert docs == [
        Document(id="notes", paragraphs=("First para\nline two.", "Second."), source="notes")
    ]
    assert stats.documents == 1 and stats.files == 1 and stats.skipped == 0


def test_tiny_fixture_and_gzip_text(tmp_path: Path) -> None:
    raw = (FIXTURES / "tiny.txt").read_bytes()
    (doc,) = read_documents(FIXTURES / "tiny.txt")
    (gz_doc,) = read_documents(_write(tmp_path / "tiny.txt.gz", raw))
    assert doc.paragraphs == gz_doc.paragraphs and len(doc.paragraphs) == 3
    assert doc.paragraphs[1].startswith("Install it with pip") and "\n- unpack" in doc.paragraphs[1]


def test_lines_format(tmp_path: Path) -> None:
    p = _write(tmp_path / "l.txt", b"one doc.\n\n  two doc.  \n")
    docs = list(read_documents(p, "lines"))
    assert [(d.id, d.paragraphs) for d in docs] == [("l:1", ("one doc.",)), ("l:3", ("two doc.",))]


def test_jsonl_text_and_paragraphs(tmp_path: Path) -> None:
    recs = [
        {"id": "a", "text": "P1 s1. P1 s2.\n\nP2.", "title": "T", "source": "web"},
        {"paragraphs": ["x.", " ", "y."]},
        {"id": 7, "paragraphs": ["z."]},
    ]
    p = _write(tmp_path / "docs.jsonl.gz", "\n".join(map(json.dumps, recs)).encode())
    docs = list(read_documents(p))
    assert docs[0] == Document("a", ("P1 s1. P1 s2.", "P2."), "web", {"title": "T"})
    assert docs[1] == Document("docs:2", ("x.", "y."), "docs", {})
    assert docs[2].id == "7"


def test_corpus_fixture_streams_all_documents() -> None:
    stats = ReadStats()
    docs = list(read_documents(FIXTURES / "corpus_small.docs.jsonl.gz", stats=stats))
    assert len(docs) == stats.documents == 200 and stats.skipped == 0
    assert {d.source for d in docs} >= {"austen", "bible_web", "devil", "python_doc"}
    assert all(d.paragraphs and all(p.strip() for p in d.paragraphs) for d in docs)
    assert "title" in docs[0].meta


def test_pairs_fixture_auto_detected_and_split_filter() -> None:
    path = FIXTURES / "pairs_small.jsonl.gz"
    stats = ReadStats()
    docs = list(read_documents(path, stats=stats))
    assert len(docs) == 300 and stats.skipped == 0
    d = docs[0]
    assert {"summary", "split", "id", "section"} <= set(d.meta) and "document" not in d.meta
    assert d.id == d.meta["id"] and d.paragraphs
    assert {x.meta["split"] for x in docs} == {"train", "valid", "test"}

    valid_stats = ReadStats()
    valid = list(read_documents(path, "pairs", split="valid", stats=valid_stats))
    assert len(valid) == 50 and all(x.meta["split"] == "valid" for x in valid)
    assert valid_stats.filtered_split == 250
    assert "250 record(s) of other splits" in valid_stats.summary()


def test_empty_file_gives_zero_documents_and_says_so(tmp_path: Path, caplog) -> None:
    for name in ("empty.jsonl", "empty.txt", "empty.jsonl.gz", "blank.txt"):
        _write(tmp_path / name, b"" if name != "blank.txt" else b"\n  \n\n")
    stats = ReadStats()
    with caplog.at_level(logging.WARNING):
        docs = list(iter_documents([str(tmp_path / "*")], stats=stats))
    assert docs == [] and stats.files == 4 and stats.empty_files == 4
    assert "empty file" in caplog.text
    assert "4 empty file(s)" in stats.summary()


BAD_JSONL = b"\n".join(
    [
        b'{"id": "ok1", "text": "Fine."}',
        b"[1, 2, 3]",  # line 2: a list
        b"42",  # line 3: a number
        b'{"id": "broken", "text": "no end',  # line 4: broken JSON
        b'{"id": "bad\xff\xfeutf8", "text": "x"}',  # line 5: invalid UTF-8
        b'{"id": "nt", "body": "no text field"}',  # line 6
        b'{"id": "e", "text": "   "}',  # line 7: empty text
        b'{"id": "bf", "paragraphs": "not a list"}',  # line 8
        b"",
        b'{"id": "ok2", "paragraphs": ["Also fine."]}',  # line 10
    ]
)


def test_bad_jsonl_lines_are_skipped_counted_and_logged(tmp_path: Path, caplog) -> None:
    p = _write(tmp_path / "bad.jsonl", BAD_JSONL)
    stats = ReadStats()
    with caplog.at_level(logging.WARNING, logger="lcm.text.readers"):
        docs = list(read_documents(p, stats=stats))
    assert [d.id for d in docs] == ["ok1", "ok2"]
    assert (
        stats.skipped_not_object,
        stats.skipped_bad_json,
        stats.skipped_bad_utf8,
        stats.skipped_no_text,
        stats.skipped_empty,
        stats.skipped_bad_field,
    ) == (2, 1, 1, 1, 1, 1)
    assert stats.skipped == 7 and stats.documents == 2
    # the first few problems are logged with file:line
    assert f"{p}:2: expected a JSON object, got an array" in caplog.text
    assert f"{p}:4: invalid JSON" in caplog.text
    assert "further problems in this file are counted" in caplog.text
    summary = stats.summary()
    assert "skipped 7 bad record(s)" in summary and "not_object=2" in summary


@pytest.mark.parametrize(
    ("line_no", "pattern"),
    [
        (2, r"bad\.jsonl:2: expected a JSON object, got an array"),
        (3, r"bad\.jsonl:3: expected a JSON object, got a number"),
        (4, r"bad\.jsonl:4: invalid JSON: Unterminated string"),
        (5, r"bad\.jsonl:5: invalid UTF-8 at byte 11"),
        (6, r'bad\.jsonl:6: no "text" or "paragraphs" field'),
        (7, r"bad\.jsonl:7: document has no text"),
        (8, r'bad\.jsonl:8: "paragraphs" must be a list of strings'),
    ],
)
def test_bad_jsonl_line_raises_with_file_and_line(
    tmp_path: Path, line_no: int, pattern: str
) -> None:
    lines = BAD_JSONL.split(b"\n")
    # keep the good first line and exactly one bad line, at its original line number
    data = b"\n".join(lines[0:1] + [b""] * (line_no - 2) + [lines[line_no - 1]])
    p = _write(tmp_path / "bad.jsonl", data)
    it = read_documents(p, on_error="raise")
    assert next(it).id == "ok1"
    with pytest.raises(DataError, match=pattern) as exc:
        next(it)
    assert exc.value.line == line_no and exc.value.path == str(p)


def test_invalid_utf8_in_text_file(tmp_path: Path) -> None:
    p = _write(tmp_path / "t.txt", b"Good line.\nBad \xc3\x28 line.\n\nNext para.\n")
    stats = ReadStats()
    (doc,) = read_documents(p, stats=stats)
    assert doc.paragraphs == ("Good line.", "Next para.")  # bad line dropped, not repaired
    assert stats.skipped_bad_utf8 == 1
    with pytest.raises(DataError, match=r"t\.txt:2: invalid UTF-8"):
        list(read_documents(p, on_error="raise"))


def test_pairs_validation(tmp_path: Path) -> None:
    recs = [
        {"id": "p1", "summary": "S", "document": "D one.\n\nD two.", "split": "train"},
        {"id": "p2", "summary": None, "document": "D.", "split": "train"},
        {"id": "p3", "summary": "S", "split": "train"},
        {"id": "p4", "summary": "S", "document": "", "split": "train"},
    ]
    p = _write(tmp_path / "pairs.jsonl", "\n".join(map(json.dumps, recs)).encode())
    stats = ReadStats()
    docs = list(read_documents(p, "pairs", stats=stats))
    assert [d.id for d in docs] == ["p1"] and docs[0].paragraphs == ("D one.", "D two.")
    assert (stats.skipped_bad_field, stats.skipped_no_text, stats.skipped_empty) == (1, 1, 1)


def test_truncated_gzip_is_counted_or_raised(tmp_path: Path) -> None:
    data = gzip.compress(b'{"text": "A."}\n' * 2000)
    p = tmp_path / "trunc.jsonl.gz"
    p.write_bytes(data[: len(data) // 2])
    stats = ReadStats()
    docs = list(read_documents(p, stats=stats))
    assert stats.read_errors == 1 and len(docs) == stats.documents < 2000
    assert "unreadable/truncated" in stats.summary()
    with pytest.raises(DataError, match=r"trunc\.jsonl\.gz:\d+: cannot read file"):
        list(read_documents(p, on_error="raise"))


def test_iter_documents_globs_dirs_and_missing(tmp_path: Path) -> None:
    _write(tmp_path / "a.jsonl", b'{"text": "A."}\n')
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "b.txt.gz", b"B.\n")
    _write(tmp_path / "sub" / "ignored.bin", b"\x00")
    stats = ReadStats()
    docs = list(iter_documents([str(tmp_path)], stats=stats))
    assert [d.source for d in docs] == ["a", "b"] and stats.files == 2
    assert [
        d.id for d in iter_documents([str(tmp_path / "*.jsonl"), str(tmp_path / "a.jsonl")])
    ] == ["a:1"]  # de-duplicated
    with pytest.raises(DataError, match="no files match"):
        iter_documents([str(tmp_path / "*.nope")])
    with pytest.raises(DataError, match="no such file"):
        read_documents(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="unknown format"):
        read_documents(tmp_path / "a.jsonl", "csv")
    with pytest.raises(ValueError, match="on_error"):
        read_documents(tmp_path / "a.jsonl", on_error="ignore")


def test_glossary_records_use_definitions_and_examples(tmp_path: Path) -> None:
    path = tmp_path / "wordnet.docs.jsonl"
    rows = [
        {
            "id": "wn/1",
            "title": "run",
            "paragraphs": [],
            "definitions": ["move fast"],
            "examples": ["he ran to the store"],
        },
        {"id": "wn/2", "title": "x", "paragraphs": [], "definitions": [], "examples": []},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = ReadStats()
    docs = list(read_documents(path, stats=stats))
    assert [d.paragraphs for d in docs] == [("move fast", "he ran to the store")]
    assert stats.skipped_empty == 1

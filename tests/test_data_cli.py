"""``lcm data`` subcommands: shards, segment, build-corpus dispatch, fit-normalizer."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from conftest import REPO

from lcm.cli.data import main
from lcm.data import read_shards

FIXTURES = REPO / "tests" / "fixtures"
CORPUS = str(FIXTURES / "corpus_small.docs.jsonl.gz")
PAIRS = str(FIXTURES / "pairs_small.jsonl.gz")


def test_shards_from_fixtures(tmp_path: Path, capsys) -> None:
    out = tmp_path / "shards"
    argv = ["shards", CORPUS, PAIRS, "--out", str(out), "--docs-per-shard", "128"]
    assert main([*argv, "--max-chars", "200", "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "read 500 documents from 2 file(s); skipped 0 bad records" in stdout
    assert "wrote 500 documents" in stdout and "to 4 shard(s)" in stdout
    rows = list(read_shards(out, columns=["sentences"]))
    assert len(rows) == 500
    assert max(len(s) for r in rows for s in r["sentences"]) <= 200


def test_shards_split_filter(tmp_path: Path, capsys) -> None:
    assert main(["shards", PAIRS, "--out", str(tmp_path), "--split", "test", "--no-progress"]) == 0
    assert "250 record(s) of other splits filtered out" in capsys.readouterr().out
    assert len(list(read_shards(tmp_path, columns=["doc_id"]))) == 50


def test_shards_reports_skips_and_strict_stops(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "Good one."}\n[1]\n{broken\n\xff\xfe\n{"text": "Good two."}\n')
    assert main(["shards", str(bad), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    cap = capsys.readouterr()
    assert "read 2 documents" in cap.out
    assert "skipped 3 bad record(s) (bad_json=1, not_object=1, bad_utf8=1)" in cap.out
    assert "warning: 3 bad record(s) skipped" in cap.err  # never silent, even if stdout is piped

    code = main(["shards", str(bad), "--out", str(tmp_path / "b"), "--strict", "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"error: {bad}:2: expected a JSON object, got an array" in err
    assert not list((tmp_path / "b").glob("*.parquet"))  # nothing published


def test_shards_warns_about_heldout_sources(tmp_path: Path, capsys) -> None:
    doc = '{"id": "a", "paragraphs": ["The orcs came at dawn."]}\n'
    (tmp_path / "wesnoth.docs.jsonl").write_text(doc)
    (tmp_path / "naev.docs.jsonl").write_text(doc)
    argv = ["shards", str(tmp_path / "naev.docs.jsonl"), "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "train")]) == 0
    assert "held-out" not in capsys.readouterr().err
    argv.insert(1, str(tmp_path / "wesnoth.docs.jsonl"))
    assert main([*argv, "--out", str(tmp_path / "mixed")]) == 0  # written, with a warning
    err = capsys.readouterr().err
    assert "warning:" in err and "held-out test source(s) wesnoth" in err and "never train" in err
    assert len(list(read_shards(tmp_path / "mixed", columns=["doc_id"]))) == 2


def test_shards_errors(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["shards", str(empty), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "1 empty file(s)" in err and "no documents written" in err

    assert main(["shards", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "m")]) == 1
    assert "missing.jsonl: no such file" in capsys.readouterr().err

    out = tmp_path / "twice"
    assert main(["shards", CORPUS, "--out", str(out), "--no-progress"]) == 0
    assert main(["shards", CORPUS, "--out", str(out), "--no-progress"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["shards", CORPUS, "--out", str(out), "--no-progress", "--overwrite"]) == 0

    assert main(["shards", CORPUS]) == 2  # --out is required: argparse usage error
    assert main(["shards", CORPUS, "--out", str(out), "--max-chars", "0"]) == 2


def test_segment_file_and_stdin(tmp_path: Path, capsys, monkeypatch) -> None:
    assert main(["segment", str(FIXTURES / "tiny.txt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        "Dr. Smith went to Washington, D.C. on Monday.",
        "He met J. R. R. Tolkien's heirs, e.g. Christopher, at 3.14 p.m. sharp.",
        '"Is it true?" she asked.',
    ]
    assert "- unpack it into a new directory" in lines

    stdin = io.TextIOWrapper(io.BytesIO(b"One sentence here. And another one!\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["segment", "-", "--max-chars", "12"]) == 0
    assert capsys.readouterr().out.splitlines() == ["One sentence", "here.", "And another", "one!"]

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"bad \xff byte")))
    assert main(["segment"]) == 1
    assert "<stdin>: invalid UTF-8 at byte 4" in capsys.readouterr().err


def test_segment_jsonl_documents_separated_by_blank_line(tmp_path: Path, capsys) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "A one. B two."}\n{"paragraphs": ["C three."]}\n')
    assert main(["segment", str(p)]) == 0
    assert capsys.readouterr().out == "A one.\nB two.\n\nC three.\n"


def test_build_corpus_dispatches_remaining_args(monkeypatch) -> None:
    from lcm.data.build_corpus import build as build_corpus

    seen: list[list[str]] = []
    monkeypatch.setattr(build_corpus, "main", lambda argv: seen.append(argv) or 0)
    assert main(["build-corpus", "--out", "x", "--only", "austen", "-h"]) == 0
    assert seen == [["--out", "x", "--only", "austen", "-h"]]


def test_embed_and_fit_normalizer_need_their_arguments(capsys) -> None:
    # Their behaviour is tested in test_concepts_data.py.
    assert main(["fit-normalizer", "--anything"]) == 2
    assert "usage: lcm data fit-normalizer" in capsys.readouterr().err
    assert main(["embed", "shards-dir"]) == 2
    assert "--out" in capsys.readouterr().err


def test_help_and_top_level_entry(capsys) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for sub in ("shards", "segment", "build-corpus", "fit-normalizer"):
        assert sub in out
    assert main(["--help"]) == 0
    assert "usage: lcm data" in capsys.readouterr().out

    from lcm.cli import main as lcm_main

    assert lcm_main(["data", "segment", str(FIXTURES / "tiny.txt")]) == 0
    assert "That was all." in capsys.readouterr().out


@pytest.mark.parametrize("sub", ["shards", "segment"])
def test_subcommand_help(sub: str, capsys) -> None:
    assert main([sub, "--help"]) == 0
    assert f"usage: lcm data {sub}" in capsys.readouterr().out

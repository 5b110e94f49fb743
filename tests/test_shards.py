"""Parquet shards: schema, round trips, row groups, manifest and atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO

from lcm.data import (
    SHARD_SCHEMA,
    DataError,
    Document,
    ShardWriter,
    iter_documents,
    read_shards,
    segment_document,
    write_documents,
)

FIXTURES = REPO / "tests" / "fixtures"


def test_schema_columns() -> None:
    assert SHARD_SCHEMA.names == ["doc_id", "source", "sentences", "embeddings", "meta_json"]
    assert str(SHARD_SCHEMA.field("embeddings").type) == "list<item: list<item: float>>"
    assert SHARD_SCHEMA.field("embeddings").nullable
    assert SHARD_SCHEMA.metadata[b"lcm.schema_version"] == b"1"


def test_round_trip_with_embeddings_row_groups_and_manifest(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    docs = []
    for i in range(7):
        sents = [f"Sentence {j} of doc {i}." for j in range(i + 1)]
        emb = None if i % 3 == 1 else rng.standard_normal((len(sents), 5)).astype(np.float32)
        docs.append((f"d{i}", sents, f"src{i % 2}", emb, {"i": i, "t": "\u00e9"}))
    with ShardWriter(tmp_path, docs_per_shard=3, row_group_size=2) as w:
        for doc_id, sents, src, emb, meta in docs:
            w.write(doc_id, sents, source=src, embeddings=emb, meta=meta)
    paths = w.close()  # idempotent after the with block
    assert [p.name for p in paths] == [f"shard-0000{i}.parquet" for i in range(3)]
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "manifest.json",
        *(p.name for p in paths),
    ]  # no temporary files left

    rows = list(read_shards(tmp_path))
    assert len(rows) == 7
    for row, (doc_id, sents, src, emb, meta) in zip(rows, docs, strict=True):
        assert (row["doc_id"], row["sentences"], row["source"]) == (doc_id, sents, src)
        assert json.loads(row["meta_json"]) == meta
        if emb is None:
            assert row["embeddings"] is None
        else:
            assert row["embeddings"].dtype == np.float32
            np.testing.assert_array_equal(row["embeddings"], emb)

    # one row group per row_group_size documents, never spanning shards
    assert [pq.ParquetFile(p).num_row_groups for p in paths] == [2, 2, 1]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["embedding_dim"] == 5
    assert manifest["n_docs"] == 7 and manifest["n_sentences"] == sum(range(1, 8))
    assert [s["n_docs"] for s in manifest["shards"]] == [3, 3, 1]
    assert [s["n_sentences"] for s in manifest["shards"]] == [6, 15, 7]

    # column selection and a single file
    only = list(read_shards(paths[1], columns=["doc_id", "sentences"]))
    assert [set(r) for r in only] == [{"doc_id", "sentences"}] * 3
    assert [r["doc_id"] for r in only] == ["d3", "d4", "d5"]


def test_fixture_docs_to_shards_round_trip(tmp_path: Path) -> None:
    docs = list(iter_documents([str(FIXTURES / "corpus_small.docs.jsonl.gz")]))
    stats = write_documents(docs, tmp_path, max_chars=200, docs_per_shard=64, progress=False)
    assert stats["documents_in"] == stats["documents_written"] == 200
    assert stats["skipped_no_sentences"] == 0 and len(stats["shards"]) == 4
    assert stats["sentence_chars_max"] <= 200
    rows = list(read_shards(tmp_path))
    assert [r["doc_id"] for r in rows] == [d.id for d in docs]
    for row, doc in zip(rows, docs, strict=True):
        assert row["sentences"] == segment_document(doc.paragraphs, 200)
        assert row["source"] == doc.source and json.loads(row["meta_json"]) == dict(doc.meta)
        assert row["embeddings"] is None  # reserved until an encoder fills it
    assert stats["sentences"] == sum(len(r["sentences"]) for r in rows)


def test_write_documents_counts_docs_without_sentences(tmp_path: Path) -> None:
    docs = [Document("a", ("One. Two.",)), Document("b", (" \n ",)), Document("c", ("Three.",))]
    stats = write_documents(docs, tmp_path, progress=False)
    assert (stats["documents_written"], stats["skipped_no_sentences"]) == (2, 1)
    assert [r["doc_id"] for r in read_shards(tmp_path)] == ["a", "c"]


def test_nan_embeddings_raise_and_leave_no_partial_shard(tmp_path: Path) -> None:
    bad = np.ones((2, 4), dtype=np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        with ShardWriter(tmp_path, docs_per_shard=4, row_group_size=1) as w:
            for i in range(6):  # shard 0 completes (4 docs), shard 1 is half written
                w.write(f"d{i}", ["a.", "b."], embeddings=np.ones((2, 4)))
            w.write("bad", ["a.", "b."], embeddings=bad)
    names = sorted(f.name for f in tmp_path.iterdir())
    # the complete shard stays, the half shard's temp file is gone, no manifest = unfinished
    assert names == ["shard-00000.parquet"]
    assert not (tmp_path / "shard-00001.parquet").exists()


def test_crash_mid_shard_leaves_no_final_name(tmp_path: Path) -> None:
    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom), ShardWriter(tmp_path, row_group_size=2) as w:
        for i in range(5):
            w.write(f"d{i}", ["x."])
        # a temp file exists (two row groups flushed) but no final name yet
        assert not list(tmp_path.glob("shard-*.parquet"))
        assert len(list(tmp_path.glob(".shard-00000.parquet.tmp-*"))) == 1
        raise Boom
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"embeddings": np.ones((3, 4))}, r"shape \[2, D\]"),
        ({"embeddings": np.ones(2)}, r"shape \[2, D\]"),
        ({"embeddings": np.array([[1.0, np.inf], [0.0, 0.0]])}, "NaN or Inf"),
        ({"meta": {"x": object()}}, "not JSON-serializable"),
    ],
)
def test_write_validation_keeps_writer_usable(tmp_path: Path, kwargs: dict, pattern: str) -> None:
    with ShardWriter(tmp_path) as w:
        with pytest.raises(ValueError, match=pattern):
            w.write("bad", ["a.", "b."], **kwargs)
        w.write("good", ["a.", "b."])
    assert [r["doc_id"] for r in read_shards(tmp_path)] == ["good"]


def test_write_rejects_bad_ids_sentences_and_dims(tmp_path: Path) -> None:
    with ShardWriter(tmp_path) as w:
        with pytest.raises(ValueError, match="doc_id"):
            w.write("", ["a."])
        with pytest.raises(ValueError, match="not one str"):
            w.write("x", "a sentence")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="at least one sentence"):
            w.write("x", [])
        w.write("x", ["a."], embeddings=np.zeros((1, 3)))
        with pytest.raises(ValueError, match="embedding dim 4 differs from 3"):
            w.write("y", ["a."], embeddings=np.zeros((1, 4)))
    with pytest.raises(RuntimeError, match="closed"):
        w.write("z", ["a."])


def test_existing_shards_need_overwrite(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, docs_per_shard=1) as w:
        for i in range(3):
            w.write(f"old{i}", ["x."])
    with pytest.raises(FileExistsError, match="already contains shards"):
        ShardWriter(tmp_path)
    with ShardWriter(tmp_path, docs_per_shard=1, overwrite=True) as w:
        w.write("new", ["y."])
    assert sorted(f.name for f in tmp_path.iterdir()) == ["manifest.json", "shard-00000.parquet"]
    assert [r["doc_id"] for r in read_shards(tmp_path)] == ["new"]


def test_read_shards_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_shards(tmp_path / "nope")
    bad = tmp_path / "x.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet shard"):
        list(read_shards(bad))
    with pytest.raises(DataError, match="unknown shard column"):
        read_shards(bad, columns=["text"])

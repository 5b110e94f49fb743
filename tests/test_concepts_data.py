"""LCM training data: EOT appending, normalization, wrapping, packing, batches, shards, CLI."""

from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from flax import nnx

import lcm.cli.embed as embed_cli
from lcm.cli.data import main as data_main
from lcm.data.concepts import (
    EOT_FILE,
    ConceptDataConfig,
    ConceptSource,
    SyntheticConfig,
    build_rows,
    concept_normalizer,
    eot_vector,
    iter_raw_documents,
    load_concepts,
    pack_rows,
    wrap_pieces,
)
from lcm.data.normalizer import Normalizer
from lcm.data.shards import ShardWriter, read_shards, write_documents
from lcm.text.readers import DataError, Document
from trainers.config import load_train_config
from trainers.task import DataContext
from trainers.tasks import get_task

SYN = ConceptDataConfig(
    max_seq_len=8, synthetic=SyntheticConfig(dim=6, num_docs=40, min_len=2, max_len=19)
)


def test_wrap_pieces() -> None:
    # Documents of 5, 20 and 2 concepts; the 20 wraps into 8 + 8 + 4.
    pieces = wrap_pieces(np.array([0, 5, 25, 27]), 8)
    np.testing.assert_array_equal(pieces, [[0, 5], [5, 8], [13, 8], [21, 4], [25, 2]])


def test_pack_rows_best_fit() -> None:
    lengths = np.array([5, 3, 6, 2, 8, 1, 4])
    rows = pack_rows(lengths, 8)
    assert sorted(i for row in rows for i in row) == list(range(7))  # each piece exactly once
    assert all(lengths[row].sum() <= 8 for row in rows)
    assert rows == [[0, 1], [2, 3], [4], [5, 6]]  # best fit: 2 goes into the row with room 2
    assert pack_rows(np.array([8, 8]), 8) == [[0], [1]]


def test_eot_is_appended_and_everything_normalized() -> None:
    concepts = load_concepts(SYN)
    norm = concept_normalizer(SYN)
    eot = norm.normalize(eot_vector(SYN))
    raw = list(iter_raw_documents(SYN))
    assert concepts.num_docs == len(raw) and concepts.dim == 6
    for i, (doc_id, vectors, context) in enumerate(raw):
        assert context == 0
        doc = concepts.doc(i)
        assert concepts.doc_ids[i] == doc_id and len(doc) == len(vectors) + 1
        np.testing.assert_allclose(doc[:-1], norm.normalize(vectors), atol=1e-5)
        np.testing.assert_allclose(doc[-1], eot, atol=1e-5)
    none = load_concepts(dataclasses.replace(SYN, eot="none"))
    assert len(none.vectors) == len(concepts.vectors) - concepts.num_docs
    # The normalizer is fitted on the training split, whatever split is loaded.
    assert concept_normalizer(dataclasses.replace(SYN, split="valid")).center.tolist() == (
        norm.center.tolist()
    )


def test_splits_are_disjoint_and_complete() -> None:
    ids = {
        split: set(load_concepts(dataclasses.replace(SYN, split=split, valid_fraction=0.2)).doc_ids)
        for split in ("train", "valid", "all")
    }
    assert ids["train"] and ids["valid"] and not ids["train"] & ids["valid"]
    assert ids["train"] | ids["valid"] == ids["all"]


@pytest.mark.parametrize("pack", [True, False])
def test_rows_rebuild_every_document_exactly(pack: bool) -> None:
    concepts = load_concepts(SYN)
    table = build_rows(concepts, 8, pack=pack, seed=3)
    seen: dict[int, list[int]] = {}
    for r in range(table.num_rows):
        idx, seg, pos = table.index[r], table.segment_ids[r], table.positions[r]
        assert np.all((idx < 0) == (seg == 0))  # padding is exactly where there is no concept
        if not pack:
            assert set(seg[seg > 0]) <= {1}
        for s in set(seg[seg > 0].tolist()):
            piece = idx[seg == s]
            np.testing.assert_array_equal(pos[seg == s], np.arange(len(piece)))
            np.testing.assert_array_equal(piece, np.arange(piece[0], piece[0] + len(piece)))
            doc = int(np.searchsorted(concepts.offsets, piece[0], side="right") - 1)
            seen.setdefault(doc, []).extend(piece.tolist())
    for doc in range(concepts.num_docs):  # wrapped pieces cover each document once, in order
        a, b = concepts.offsets[doc], concepts.offsets[doc + 1]
        assert sorted(seen[doc]) == list(range(a, b))
    if pack:  # best fit leaves little room
        assert (table.segment_ids > 0).mean() > 0.9


def test_batches_are_a_pure_function_of_seed_and_step() -> None:
    one = ConceptSource(SYN, batch_size=6, seed=1)
    again = ConceptSource(SYN, batch_size=6, seed=1)
    b0 = one.batch(5)
    assert set(b0) == {"concepts", "segment_ids", "positions", "mask", "loss_mask"}
    np.testing.assert_array_equal(b0["loss_mask"], b0["mask"])  # no fine-tuning context
    assert b0["concepts"].shape == (6, 8, 6) and b0["concepts"].dtype == np.float32
    for k in b0:
        np.testing.assert_array_equal(b0[k], again.batch(5)[k])
    np.testing.assert_array_equal(b0["mask"], b0["segment_ids"] > 0)
    assert np.all(b0["concepts"][~b0["mask"]] == 0)
    assert not np.array_equal(one.batch(6)["concepts"], b0["concepts"])
    # Two processes build exactly the two halves of the one-process global batch.
    halves = [
        ConceptSource(SYN, batch_size=6, seed=1, process_index=i, process_count=2).batch(5)
        for i in range(2)
    ]
    np.testing.assert_array_equal(np.concatenate([h["concepts"] for h in halves]), b0["concepts"])


def test_an_epoch_visits_every_row_once() -> None:
    src = ConceptSource(SYN, batch_size=4, seed=2)
    n = src.table.num_rows
    firsts = []
    for step in range(0, n // 4):
        b = src.batch(step)
        firsts.extend(map(tuple, b["concepts"][:, 0, :2].round(5).tolist()))
    first_col = {tuple(v) for v in src.concepts.vectors[src.table.index[:, 0], :2].round(5)}
    assert len(set(firsts)) == len(firsts) and set(firsts) <= first_col


class HashEncoder:
    """A stand-in codec: deterministic vectors from each sentence's hash."""

    dim = 5

    def encode(self, sentences: list[str]) -> np.ndarray:
        rows = [
            np.random.default_rng(zlib.crc32(s.encode())).normal(size=self.dim) for s in sentences
        ]
        return np.asarray(rows, np.float32).reshape(len(sentences), self.dim) * 3 + 1


@pytest.fixture
def text_shards(tmp_path: Path) -> Path:
    docs = [
        Document(f"d{i}", (" ".join(f"Sentence {j} of document {i}." for j in range(2 + i % 11)),))
        for i in range(30)
    ]
    write_documents(docs, tmp_path / "text", docs_per_shard=12, progress=False)
    return tmp_path / "text"


def test_embed_and_fit_normalizer_cli_then_load(
    text_shards: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    loaded = []
    monkeypatch.setattr(
        embed_cli, "_load_codec", lambda *args: loaded.append(args) or HashEncoder()
    )
    out = tmp_path / "embedded"
    argv = ["embed", str(text_shards), "--out", str(out), "--batch-sentences", "16"]
    assert data_main([*argv, "--precision", "bfloat16", "--no-progress"]) == 0
    assert loaded == [("default", "bfloat16")]
    assert "embedded 30 documents" in capsys.readouterr().out
    rows = list(read_shards(out))
    for row in rows:
        np.testing.assert_allclose(row["embeddings"], HashEncoder().encode(row["sentences"]))
    np.testing.assert_allclose(np.load(out / EOT_FILE), HashEncoder().encode(["End of text."])[0])

    norm_path = tmp_path / "normalizer.npz"
    assert data_main(["fit-normalizer", str(out), "--out", str(norm_path)]) == 0
    assert "gaussian_robust normalizer (D=5)" in capsys.readouterr().out
    norm = Normalizer.load(norm_path)
    all_vecs = np.concatenate([r["embeddings"] for r in rows])
    np.testing.assert_allclose(norm.center, np.median(all_vecs, axis=0), atol=1e-5)

    cfg = ConceptDataConfig(
        source="shards", shards=str(out), normalizer=str(norm_path), split="all", max_seq_len=8
    )
    concepts = load_concepts(cfg)
    assert concepts.num_docs == 30 and concepts.dim == 5
    assert len(concepts.vectors) == len(all_vecs) + 30  # one EOT per document
    np.testing.assert_allclose(
        concepts.doc(0)[-1], norm.normalize(np.load(out / EOT_FILE)), atol=1e-5
    )
    batch = ConceptSource(cfg, batch_size=4, seed=0).batch(0)
    assert batch["concepts"].shape == (4, 8, 5)


def test_shards_without_embeddings_are_refused(text_shards: Path, tmp_path: Path) -> None:
    cfg = ConceptDataConfig(source="shards", shards=str(text_shards), eot="none", split="all")
    with pytest.raises(ValueError, match="fit-normalizer"):
        load_concepts(cfg)
    norm = tmp_path / "n.npz"
    Normalizer(np.zeros(5, np.float32), np.ones(5, np.float32)).save(norm)
    with pytest.raises(DataError, match="no embeddings"):
        load_concepts(dataclasses.replace(cfg, normalizer=str(norm)))
    with pytest.raises(FileNotFoundError, match="eot.npy"):
        eot_vector(dataclasses.replace(cfg, eot="auto"))


def test_fit_normalizer_sample_is_bounded(tmp_path: Path) -> None:
    with ShardWriter(tmp_path / "s") as w:
        for i in range(50):
            w.write(f"d{i}", ["a", "b", "c"], embeddings=np.full((3, 2), i, np.float32))
    out = tmp_path / "n.npz"
    argv = ["fit-normalizer", str(tmp_path / "s"), "--out", str(out), "--max-vectors", "40"]
    assert data_main([*argv, "--method", "standard"]) == 0
    assert Normalizer.load(out).method == "standard"
    assert data_main(["fit-normalizer", str(tmp_path / "nowhere"), "--out", str(out)]) == 1


def test_fixture_config_runs_on_embedded_fixture_shards(tmp_path: Path, monkeypatch) -> None:
    """The real-shard tiny config: fixture sentences -> shards -> embed -> normalizer -> task."""
    monkeypatch.setattr(embed_cli, "_load_codec", lambda *args: HashEncoder())
    corpus = str(REPO / "tests" / "fixtures" / "corpus_small.docs.jsonl.gz")
    text, emb = tmp_path / "text", tmp_path / "concepts"
    assert data_main(["shards", corpus, "--out", str(text), "--no-progress"]) == 0
    assert data_main(["embed", str(text), "--out", str(emb), "--no-progress"]) == 0
    assert data_main(["fit-normalizer", str(emb), "--out", str(emb / "normalizer.npz")]) == 0
    cfg = load_train_config(
        REPO / "configs" / "lcm" / "base_lcm_fixture_tiny.yaml",
        [f"data.shards={emb}", f"data.normalizer={emb / 'normalizer.npz'}"],
    )
    task = get_task(cfg.family)
    batch = task.build_data(cfg.data, cfg.model, DataContext(batch_size=8, seed=0)).batch(0)
    assert batch["concepts"].shape == (8, 32, 5) and batch["mask"].mean() > 0.9
    model = nnx.eval_shape(lambda: task.build_model(cfg.model, cfg.data, nnx.Rngs(0)))
    assert model.concept_dim == 5  # D comes from the data


def test_tiny_config_reads_the_synthetic_source() -> None:
    cfg = load_train_config(REPO / "configs" / "lcm" / "base_lcm_tiny.yaml")
    assert cfg.data.source == "synthetic" and cfg.data.synthetic.dim == 16
    assert load_concepts(cfg.data).dim == 16


class FailingEncoder(HashEncoder):
    """Encodes ``calls`` batches, then fails: an embedding run interrupted midway."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def encode(self, sentences: list[str]) -> np.ndarray:
        if self.calls == 0:
            raise RuntimeError("interrupted")
        self.calls -= 1
        return super().encode(sentences)


def test_embed_resumes_an_interrupted_run(text_shards: Path, tmp_path: Path) -> None:
    from lcm.data.embed import embed_shards

    full, part = tmp_path / "full", tmp_path / "part"
    kwargs = {"batch_sentences": 16, "docs_per_shard": 7, "progress": False}
    embed_shards(text_shards, full, HashEncoder(), **kwargs)
    with pytest.raises(RuntimeError, match="interrupted"):
        embed_shards(text_shards, part, FailingEncoder(calls=6), **kwargs)
    kept = sorted(p.name for p in part.glob("shard-*.parquet"))
    assert kept and len(kept) < 5 and not (part / "manifest.json").exists()
    with pytest.raises(FileExistsError):
        embed_shards(text_shards, part, HashEncoder(), **kwargs)
    result = embed_shards(text_shards, part, HashEncoder(), resume=True, **kwargs)
    assert result["documents"] == 30 and result["dim"] == HashEncoder.dim
    assert json.loads((part / "manifest.json").read_text()) == json.loads(
        (full / "manifest.json").read_text()
    )
    for a, b in zip(read_shards(full), read_shards(part), strict=True):
        assert a["doc_id"] == b["doc_id"]
        np.testing.assert_array_equal(a["embeddings"], b["embeddings"])
    # a finished run resumes to the same result; another shard size is refused
    embed_shards(text_shards, part, HashEncoder(), resume=True, **kwargs)
    assert len(list(read_shards(part))) == 30
    with pytest.raises(ValueError, match="docs_per_shard"):
        embed_shards(
            text_shards, part, HashEncoder(), resume=True, **{**kwargs, "docs_per_shard": 5}
        )

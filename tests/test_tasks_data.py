"""Fine-tuning documents: layout, context counts, and a loss on the targets only."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
from codec_fixtures import FIXTURES
from flax import nnx

from lcm.data.concepts import ConceptDataConfig, ConceptSource, load_concepts
from lcm.data.normalizer import Normalizer
from lcm.data.shards import ShardWriter, read_shards
from lcm.data.tasks import build_task_shards, task_example
from lcm.models.base_lcm import BaseLCM, BaseLCMConfig
from lcm.models.config import TransformerConfig


def test_task_example_layout_and_truncation() -> None:
    ex = task_example("summarize", ["a", "b", "c"], ["s"], max_concepts=8)
    assert ex.sentences == ("a", "b", "c", "[SUMMARY]:", "s") and ex.context == 4
    ex = task_example("expand", ["s"], [f"d{i}" for i in range(20)], max_concepts=8)
    assert ex.sentences[:2] == ("s", "[EXPAND]:") and len(ex.sentences) == 7 and ex.context == 2
    ex = task_example("summarize", [f"d{i}" for i in range(20)], ["s1", "s2"], max_concepts=8)
    assert ex.sentences == ("d0", "d1", "d2", "d3", "[SUMMARY]:", "s1", "s2")
    with pytest.raises(ValueError, match="unknown task"):
        task_example("translate", ["a"], ["b"], 8)
    with pytest.raises(ValueError, match="at least one"):
        task_example("expand", [], ["b"], 8)


def test_build_task_shards_marks_the_context(tmp_path) -> None:
    counts = build_task_shards(
        FIXTURES / "pairs_small.jsonl.gz", tmp_path, plain=True, progress=False
    )
    assert counts["pairs"] == counts["summarize"] == counts["expand"] == counts["plain"] == 200
    rows = list(read_shards(tmp_path))
    assert len(rows) == 600
    for row in rows:
        meta = json.loads(row["meta_json"])
        if row["doc_id"].startswith("plain:"):
            assert "context" not in meta
            continue
        marker = "[SUMMARY]:" if meta["task"] == "summarize" else "[EXPAND]:"
        assert row["sentences"][meta["context"] - 1] == marker
    with pytest.raises(Exception, match="no pairs"):
        build_task_shards(
            FIXTURES / "pairs_small.jsonl.gz", tmp_path / "none", split="nope", progress=False
        )


def test_loss_covers_only_the_targets(tmp_path) -> None:
    rng = np.random.default_rng(0)
    d = 4
    with ShardWriter(tmp_path) as w:
        for i in range(8):
            w.write(
                f"summarize:{i}",
                ["x"] * 6,
                embeddings=rng.normal(size=(6, d)).astype(np.float32),
                meta={"context": 4},
            )
    Normalizer.fit(rng.normal(size=(64, d))).save(tmp_path / "normalizer.npz")
    np.save(tmp_path / "eot.npy", np.ones(d, np.float32))
    cfg = ConceptDataConfig(
        source="shards",
        shards=str(tmp_path),
        normalizer=str(tmp_path / "normalizer.npz"),
        max_seq_len=16,
        split="all",
    )
    concepts = load_concepts(cfg)
    # Per document: 4 context concepts, then 2 targets and the end of text.
    assert concepts.targets.tolist() == ([False] * 4 + [True] * 3) * 8
    batch = ConceptSource(cfg, batch_size=2, seed=0).batch(0)
    assert batch["loss_mask"].sum() == 3 * batch["segment_ids"].max(axis=1).sum()

    model = BaseLCM(BaseLCMConfig(d_model=8, decoder=TransformerConfig(1, 2, 16)), d, nnx.Rngs(0))
    _, metrics = model.loss(batch, jax.random.key(0))
    assert metrics["tokens"] == batch["loss_mask"].sum()
    # With the loss mask off every target, nothing is left to learn.
    none = dict(batch, loss_mask=np.zeros_like(batch["loss_mask"]))
    assert model.loss(none, jax.random.key(0))[1]["tokens"] == 0
    bad = tmp_path / "bad"
    with ShardWriter(bad) as w:
        w.write("x", ["a", "b"], embeddings=np.ones((2, d), np.float32), meta={"context": 2})
    np.save(bad / "eot.npy", np.ones(d, np.float32))
    with pytest.raises(Exception, match="context=2"):
        load_concepts(dataclasses.replace(cfg, shards=str(bad)))

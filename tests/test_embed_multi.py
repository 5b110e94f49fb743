"""Embedding that scales out: several processes (and devices) write the files of one, bit for bit.

- in one process, P threads stand in for P processes (``gather`` is a barrier over threads):
  the split by output shard, the shared manifest, per-process resume, and failures (every
  process raises, nothing is published, ``--overwrite`` keeps the old dataset);
- in subprocesses with a real (tiny) codec: 1 process x 2 CPU devices and ``lcm launch`` with
  2 processes x 2 devices write byte-identical shards, manifest and ``eot.npy`` to 1 x 1, and
  a resumed 2-process run rewrites only what is missing.
- ``Codec.devices`` (the chunks of a call sent to the devices in turn) keeps the vectors.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from codec_fixtures import tiny_model_config
from conftest import REPO
from flax import nnx
from test_concepts_data import FailingEncoder, HashEncoder

import encoders
import lcm.cli.embed as embed_cli
from encoders.codec import DEFAULT_DIR, TOKENIZER_FILE, Codec
from encoders.model import CodecModel
from encoders.tokenizer import Tokenizer
from lcm.cli.data import main as data_main
from lcm.data.embed import embed_shards
from lcm.data.shards import ShardWriter, write_documents
from lcm.text.readers import DataError, Document, read_documents


class Member:
    """Process ``index`` of a :class:`Threads` job (the ``Processes`` of ``embed_shards``)."""

    def __init__(self, job: Threads, index: int) -> None:
        self.job, self.index, self.count = job, index, job.count

    def gather(self, text: str) -> list[str]:
        self.job.board[self.index] = text
        self.job.barrier.wait()
        texts = list(self.job.board)
        self.job.barrier.wait()  # nobody posts the next round before all have read this one
        return texts


class Threads:
    """``count`` threads standing in for the processes of one job."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.board: list[str] = [""] * count
        self.barrier = threading.Barrier(count, timeout=60)

    def run(self, work: Callable[[Member], Any]) -> list[Any]:
        """``work(member)`` in every thread; each one's result or exception."""
        results: list[Any] = [None] * self.count

        def one(i: int) -> None:
            try:
                results[i] = work(Member(self, i))
            except Exception as e:  # noqa: BLE001 - returned for the test to inspect
                results[i] = e

        threads = [threading.Thread(target=one, args=(i,)) for i in range(self.count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results


def files(root: Path) -> dict[str, bytes]:
    """Every file of a dataset directory by name (no hidden leftovers allowed)."""
    names = sorted(p.name for p in root.iterdir())
    assert not [n for n in names if n.startswith(".")], names
    return {n: (root / n).read_bytes() for n in names}


@pytest.fixture
def text_shards(tmp_path: Path) -> Path:
    docs = [
        Document(f"d{i}", (" ".join(f"Sentence {j} of document {i}." for j in range(2 + i % 11)),))
        for i in range(30)
    ]
    write_documents(docs, tmp_path / "text", docs_per_shard=12, progress=False)
    return tmp_path / "text"


KW = {"batch_sentences": 16, "progress": False}


@pytest.mark.parametrize(("count", "docs_per_shard"), [(2, 7), (3, 4), (5, 12)])
def test_processes_write_the_files_of_one_process(
    text_shards: Path, tmp_path: Path, count: int, docs_per_shard: int
) -> None:
    one = tmp_path / "one"
    embed_shards(text_shards, one, HashEncoder(), docs_per_shard=docs_per_shard, **KW)
    many = tmp_path / "many"
    results = Threads(count).run(
        lambda p: embed_shards(
            text_shards, many, HashEncoder(), docs_per_shard=docs_per_shard, processes=p, **KW
        )
    )
    assert all(r == results[0] for r in results)  # every process returns the whole dataset
    assert results[0]["documents"] == 30 and len(results[0]["shards"]) == -(-30 // docs_per_shard)
    assert files(many) == files(one)  # with 5 processes and 3 shards, two of them write none


def test_a_failed_process_stops_all_then_resume_per_process(
    text_shards: Path, tmp_path: Path
) -> None:
    ref, out = tmp_path / "ref", tmp_path / "out"
    embed_shards(text_shards, ref, HashEncoder(), docs_per_shard=4, **KW)
    # Process 1 dies after one batch: both raise, and no manifest says the run finished.
    encoders = [HashEncoder(), FailingEncoder(calls=1)]
    results = Threads(2).run(
        lambda p: embed_shards(
            text_shards, out, encoders[p.index], docs_per_shard=4, processes=p, **KW
        )
    )
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[0], DataError)
    assert str(results[0]) == "process 1 of 2 failed: interrupted"
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    assert "shard-00000.parquet" in done and "shard-00003.parquet" not in done
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no unfinished shard
    # Resumed by 3 processes: the kept shards stay as they are, the rest is written.
    again = Threads(3).run(
        lambda p: embed_shards(
            text_shards, out, HashEncoder(), docs_per_shard=4, resume=True, processes=p, **KW
        )
    )
    assert all(isinstance(r, dict) for r in again), again
    assert files(out) == files(ref)
    assert all((out / name).stat().st_mtime_ns == t for name, t in done.items())


def test_resume_refuses_shards_of_another_input(text_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    embed_shards(text_shards, out, HashEncoder(), docs_per_shard=4, **KW)
    (out / "shard-00001.parquet").replace(out / "shard-00009.parquet")  # beyond the input
    (out / "shard-00001.parquet").write_bytes((out / "shard-00002.parquet").read_bytes())
    results = Threads(2).run(
        lambda p: embed_shards(
            text_shards, out, HashEncoder(), docs_per_shard=4, resume=True, processes=p, **KW
        )
    )
    # Process 1 owns both strangers: it names the first; process 0 names process 1.
    assert "shard-00001.parquet does not continue" in str(results[1])
    assert str(results[0]).startswith("process 1 of 2 failed:")
    assert not (out / "manifest.json").exists()


def test_overwrite_by_processes_swaps_only_on_success(text_shards: Path, tmp_path: Path) -> None:
    ref, out = tmp_path / "ref", tmp_path / "out"
    embed_shards(text_shards, ref, HashEncoder(), docs_per_shard=5, **KW)
    with ShardWriter(out) as w:  # an older dataset in the way
        w.write("old", ["An old sentence."], embeddings=np.zeros((1, 5), np.float32))
    before = files(out)
    encoders = [FailingEncoder(calls=0), HashEncoder()]
    results = Threads(2).run(
        lambda p: embed_shards(
            text_shards, out, encoders[p.index], docs_per_shard=5, overwrite=True, processes=p, **KW
        )
    )
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], DataError)
    assert files(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    results = Threads(2).run(
        lambda p: embed_shards(
            text_shards, out, HashEncoder(), docs_per_shard=5, overwrite=True, processes=p, **KW
        )
    )
    assert files(out) == files(ref)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_input_fails_in_every_process_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    with ShardWriter(broken) as writer:
        writer.write("doc-0", ["Fine.", "Also fine."])
    (broken / "shard-00000.parquet").write_bytes(b"not parquet")
    out = tmp_path / "out"
    results = Threads(2).run(lambda p: embed_shards(broken, out, HashEncoder(), processes=p, **KW))
    assert all(isinstance(r, DataError) and "shard-00000.parquet" in str(r) for r in results)
    assert sorted(p.name for p in out.iterdir()) == ["embedding.json"]  # no shard, no manifest
    monkeypatch.setattr(embed_cli, "_load_codec", lambda *args: HashEncoder())
    assert data_main(["embed", str(broken), "--out", str(tmp_path / "cli"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lcm data embed: error: ") and "shard-0" in err


# ------------------------------------------ real processes and devices, with the tiny codec


def cli(args: list[str], devices: int, processes: int = 1) -> str:
    """Run ``lcm data embed ARGS`` on ``devices`` CPU devices in each of ``processes``."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    embed = [sys.executable, "-m", "lcm.cli", "data", "embed", *args, "--no-progress"]
    if processes == 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        cmd = embed
    else:
        launch = ["launch", "-n", str(processes), "--devices-per-process", str(devices), "--"]
        cmd = [sys.executable, "-m", "lcm.cli", *launch, *embed]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def tiny_codec(path: Path) -> None:
    """Save a tiny codec with random weights and the shipped tokenizer (trains nothing)."""
    tokenizer = Tokenizer.load(DEFAULT_DIR / TOKENIZER_FILE)
    model = CodecModel(tiny_model_config(vocab_size=tokenizer.vocab_size), nnx.Rngs(0))
    Codec(model, tokenizer).save(path)


def test_devices_and_processes_write_the_files_of_one(tmp_path: Path) -> None:
    codec = tmp_path / "codec"
    tiny_codec(codec)
    docs = list(read_documents(REPO / "tests/fixtures/corpus_small.docs.jsonl.gz"))[:24]
    text = tmp_path / "text"
    # Short sentences: few length buckets, so few programs to compile in each process.
    write_documents(docs, text, max_chars=40, docs_per_shard=16, progress=False)
    common = ["--codec", str(codec), "--docs-per-shard", "5", "--batch-sentences", "64"]

    out = {name: tmp_path / name for name in ("1x1", "1x2", "2x2")}
    cli([str(text), "--out", str(out["1x1"]), *common], devices=1)
    cli([str(text), "--out", str(out["1x2"]), *common], devices=2)
    printed = cli([str(text), "--out", str(out["2x2"]), *common], devices=2, processes=2)
    assert "[0] embedded 24 documents" in printed and "by 2 processes" in printed
    assert "[1] embedded" not in printed
    ref = files(out["1x1"])
    assert len([n for n in ref if n.startswith("shard-")]) == 5
    assert files(out["1x2"]) == ref
    assert files(out["2x2"]) == ref

    # Resume per process: shard 1 (process 1's) and 2 (process 0's) are missing.
    for name in ("shard-00001.parquet", "shard-00002.parquet", "manifest.json"):
        (out["2x2"] / name).unlink()
    kept = (out["2x2"] / "shard-00003.parquet").stat().st_mtime_ns
    cli([str(text), "--out", str(out["2x2"]), *common, "--resume"], devices=1, processes=2)
    assert files(out["2x2"]) == ref
    assert (out["2x2"] / "shard-00003.parquet").stat().st_mtime_ns == kept


def test_codec_devices_keep_the_vectors(tmp_path: Path) -> None:
    tiny_codec(tmp_path / "codec")
    device = jax.devices()[0]
    codec = encoders.load(tmp_path / "codec", devices=[device])
    assert codec.devices == (device,)
    sentences = ["A short one.", "A somewhat longer sentence than the first.", "Three."] * 12
    spread = codec.encode(sentences)
    codec.devices = None
    np.testing.assert_array_equal(codec.encode(sentences), spread)
    with pytest.raises(ValueError, match="distinct"):
        codec.devices = [device, device]

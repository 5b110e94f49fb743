"""Pipeline, LCM model directories and the summarize/expand/generate/eval-task commands.

A tiny Base-LCM (random weights) over the tiny overfitted codec: the outputs are not good
text, but every path from text to text runs, and the rules for bad input hold.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from codec_fixtures import FIXTURES, MEMORIZED, overfitted_codec
from flax import nnx
from lcm_helpers import random_model

from lcm.cli import main as lcm_main
from lcm.config import to_dict
from lcm.data.normalizer import Normalizer
from lcm.data.tasks import TASK_MARKERS
from lcm.generate import GenerationConfig
from lcm.models.base_lcm import BaseLCM, BaseLCMConfig
from lcm.models.config import TransformerConfig
from lcm.models.directory import LCMDirConfig, load_lcm, save_lcm
from lcm.pipeline import Pipeline

MODEL_CFG = BaseLCMConfig(
    d_model=16, decoder=TransformerConfig(num_layers=1, num_heads=2, mlp_dim=32)
)
DOCUMENT = " ".join(MEMORIZED[:4])


@functools.cache
def lcm_dir(tmp: str) -> Path:
    """A model directory with a random tiny Base-LCM in the tiny codec's space (+ its codec)."""
    codec = overfitted_codec()
    d = codec.dim
    model = random_model(lambda: BaseLCM(MODEL_CFG, d, nnx.Rngs(0)))
    normalizer = Normalizer.fit(codec.encode(MEMORIZED), method="standard")
    eot = codec.encode(["End of text."])[0]
    config = LCMDirConfig(
        family="base_lcm",
        concept_dim=d,
        max_seq_len=16,
        model=to_dict(MODEL_CFG),
        markers=dict(TASK_MARKERS),
        codec="tests",
    )
    path = Path(tmp) / "lcm"
    save_lcm(path, model, config, normalizer, eot, "# test model\n")
    codec.save(path / "codec")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return lcm_dir(str(tmp_path_factory.mktemp("pipeline")))


@pytest.fixture(scope="module")
def pipe(model_dir: Path) -> Pipeline:
    return Pipeline.load(
        model_dir, generation=GenerationConfig(stop_threshold=1.0, repetition_threshold=None)
    )


def test_summarize_expand_generate_give_text(pipe: Pipeline) -> None:
    summary = pipe.summarize(DOCUMENT, max_sentences=2)
    assert isinstance(summary, str) and summary.strip()
    expansion = pipe.expand("A package of tools for the command line.", max_sentences=3)
    assert isinstance(expansion, str) and expansion.strip()
    streamed = list(pipe.stream("expand", "A package of tools for the command line.", 3))
    assert " ".join(streamed) == expansion
    new = pipe.generate(MEMORIZED[:2], max_sentences=3)
    assert len(new) == 3 and all(isinstance(s, str) for s in new)
    # Batched and one at a time agree (Base-LCM is deterministic; decoding is greedy).
    many = pipe.summarize_many([DOCUMENT, MEMORIZED[4]], max_sentences=2)
    assert many[0] == summary
    assert many[1] == pipe.summarize(MEMORIZED[4], max_sentences=2)


def test_bad_input_has_documented_behaviour(pipe: Pipeline) -> None:
    with pytest.raises(TypeError, match="bytes"):
        pipe.summarize(DOCUMENT.encode())
    with pytest.raises(ValueError, match="empty"):
        pipe.summarize("   \n\n ")
    with pytest.raises(TypeError, match="list of sentences"):
        pipe.generate("One sentence.")
    with pytest.raises(ValueError, match="no room"):
        pipe.summarize(DOCUMENT, max_sentences=20)
    # A one-sentence document is fine; a 10,000-sentence one is cut to the context.
    assert pipe.summarize(MEMORIZED[0], max_sentences=1).strip()
    huge = " ".join(["The cat sat on the mat."] * 10_000)
    with pytest.warns(UserWarning, match="keeping the first 12"):
        assert pipe.summarize(huge, max_sentences=2).strip()


def test_decoding_options_reach_the_codec(model_dir: Path) -> None:
    reranking = Pipeline.load(model_dir, beam_size=3, rerank=True)
    codec = reranking.codec
    clean = codec.encode(MEMORIZED)
    assert reranking.decode(clean) == MEMORIZED
    noisy = clean + np.random.default_rng(0).normal(size=clean.shape).astype(np.float32)
    assert codec.decode(noisy, beam_size=3, rerank=True) != codec.decode(noisy)
    assert reranking.decode(noisy) == codec.decode(noisy, beam_size=3, rerank=True)
    assert Pipeline.load(model_dir).decode(noisy) == codec.decode(noisy)
    with pytest.raises(ValueError, match="needs beam_size > 1"):
        Pipeline.load(model_dir, rerank=True)
    with pytest.raises(ValueError, match="beam_size must be a positive int"):
        Pipeline(codec, reranking.lcm, beam_size=0)


def test_model_directory_round_trip_and_errors(model_dir: Path, tmp_path: Path) -> None:
    loaded = load_lcm(model_dir)
    assert loaded.config.family == "base_lcm" and loaded.eot.shape == (loaded.config.concept_dim,)
    again = Pipeline.load(model_dir, generation=GenerationConfig(stop_threshold=1.0))
    assert again.summarize(DOCUMENT, 2) == Pipeline.load(model_dir).summarize(
        DOCUMENT, 2, stop_threshold=1.0
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in model_dir.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    (broken / "weights.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable weights file"):
        load_lcm(broken)
    (broken / "weights.npz").unlink()
    with pytest.raises(FileNotFoundError, match="missing weights.npz"):
        load_lcm(broken)
    (broken / "config.yaml").write_text("family: base_lcm\nconcept_dim: 32\nmax_seq_len: 8\n")
    with pytest.raises(Exception, match="model"):
        load_lcm(broken)


def test_cli_summarize_from_file_and_stdin(model_dir: Path, tmp_path: Path, capsys, monkeypatch):
    doc = tmp_path / "doc.txt"
    doc.write_text(DOCUMENT, encoding="utf-8")
    args = ["--model", str(model_dir), "--max-sentences", "2", "--stop-threshold", "1.0"]
    assert lcm_main(["summarize", str(doc), *args]) == 0
    from_file = capsys.readouterr().out.strip()
    assert from_file

    class Stdin:
        buffer = __import__("io").BytesIO(DOCUMENT.encode())

    monkeypatch.setattr("sys.stdin", Stdin)
    assert lcm_main(["summarize", "-", *args]) == 0
    assert capsys.readouterr().out.strip() == from_file
    assert lcm_main(["expand", "Tools for the command line.", *args]) == 0
    assert capsys.readouterr().out.strip()
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait.".encode("latin-1"))
    assert lcm_main(["summarize", str(latin1), *args]) == 1
    assert "not UTF-8" in capsys.readouterr().err


def test_eval_task_scores_model_and_baselines(model_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval.json"
    argv = [
        "eval-task",
        "--task",
        "summarize",
        "--data",
        str(FIXTURES / "pairs_small.jsonl.gz"),
        "--limit",
        "6",
        "--model",
        str(model_dir),
        "--systems",
        "model,lead-1,roundtrip",
        "--json",
        str(out),
    ]
    assert lcm_main(argv) == 0
    record = json.loads(out.read_text())
    assert record["items"] == 6 and set(record["results"]) == {"model", "lead-1", "roundtrip"}
    for metrics in record["results"].values():
        assert all(0.0 <= metrics[k] <= 1.0 for k in ("rouge1", "rouge2", "rougeL", "ovl3", "rep4"))
    # lead-1 copies the input's first sentence: every 3-gram of it is in the source.
    assert record["results"]["lead-1"]["ovl3"] == pytest.approx(1.0)
    assert "| lead-1 |" in capsys.readouterr().out
    argv[argv.index("model,lead-1,roundtrip")] = "roundtrip"
    assert lcm_main([*argv, "--beam-size", "3", "--rerank"]) == 0
    record = json.loads(out.read_text())
    assert record["decoding"] == "beam3+rerank"  # named as lcm eval-codec names it
    assert set(record["results"]) == {"roundtrip"}


def test_task_metrics_closed_form() -> None:
    from lcm.eval.tasks import TaskExample, overlap, repetition, score

    assert overlap("a b c d", "x a b c d y") == 1.0
    assert overlap("a b c d", "a b x c d") == 0.0
    assert repetition("a b c d a b c d") == pytest.approx(1 / 5)
    assert repetition("one two three") == 0.0
    ex = [TaskExample("1", "the source text here", "the cat sat on the mat")]
    assert score(ex, ["the cat sat on the mat"])["rougeL"] == pytest.approx(1.0)
    assert np.isclose(score(ex, ["dogs bark"])["rouge1"], 0.0)

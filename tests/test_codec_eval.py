"""Round-trip evaluation of a codec (``lcm eval-codec``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from codec_fixtures import MEMORIZED, overfitted_codec

from encoders.evaluate import add_relative_noise, evaluate_codec, load_heldout, score
from lcm.cli.codec import eval_codec_main as main


def test_relative_noise_has_the_requested_norm() -> None:
    v = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32) * 3
    noisy = add_relative_noise(v, 0.1, seed=1)
    ratio = np.linalg.norm(noisy - v, axis=1) / np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(ratio, 0.1, rtol=1e-5)
    np.testing.assert_array_equal(noisy, add_relative_noise(v, 0.1, seed=1))  # deterministic


def test_score_bleu_and_exact_match() -> None:
    refs = ["The cat sat on the mat.", "A dog barked loudly at night."]
    perfect = score(refs, refs)
    assert perfect.bleu == pytest.approx(100.0) and perfect.exact_match == 1.0
    half = score(refs, [refs[0], "Nothing like it."])
    assert half.exact_match == 0.5 and 0 < half.bleu < 100
    with pytest.raises(ValueError, match="2 references but 1"):
        score(refs, refs[:1])


def test_memorized_sentences_round_trip_perfectly() -> None:
    codec = overfitted_codec()
    report = evaluate_codec(codec, MEMORIZED, ["a"] * len(MEMORIZED), noise_levels=(0.0, 5.0))
    assert report.overall["clean"].exact_match == 1.0
    assert report.overall["clean"].bleu == pytest.approx(100.0)
    assert report.overall["noise=0"].exact_match == 1.0
    # an enormous perturbation must hurt: the metric can fail
    assert report.overall["noise=5"].bleu < report.overall["clean"].bleu


def test_cli_on_a_prepared_split(tmp_path, capsys) -> None:
    names = ["lit", "tech"]
    lines = ["One short line.", "A second one here.", "Tech words go here.", "x " * 40]
    (tmp_path / "test.txt").write_text("\n".join(lines) + "\n")
    np.save(tmp_path / "test.source.npy", np.array([0, 0, 1, 1], np.uint8))
    (tmp_path / "manifest.json").write_text(json.dumps({"sources": names}))
    sentences, sources = load_heldout(tmp_path, max_words=30)
    assert sentences == lines[:3] and sources == ["lit", "lit", "tech"]  # 40 words dropped
    model_dir = tmp_path / "model"
    overfitted_codec().save(model_dir)
    out = tmp_path / "report.json"
    assert main([str(model_dir), "--data", str(tmp_path), "--json", str(out)]) == 0
    assert "ALL" in capsys.readouterr().out
    assert set(json.loads(out.read_text())["per_source"]) == {"lit", "tech"}
    assert main([str(model_dir), "--data", str(tmp_path / "missing")]) == 2
    args = [str(model_dir), "--data", str(tmp_path), "--json", str(out), "--beam-size", "3"]
    assert main([*args, "--rerank"]) == 0
    report = json.loads(out.read_text())
    assert report["decoding"] == "beam3+rerank" and report["overall"]["clean"]["n"] == 3
    with pytest.raises(SystemExit) as stop:
        main([str(model_dir), "--data", str(tmp_path), "--rerank"])
    assert stop.value.code == 2 and "--beam-size 2 or more" in capsys.readouterr().err


def test_eval_record_of_a_run() -> None:
    from encoders.evaluate import eval_record

    codec = overfitted_codec()
    report = evaluate_codec(codec, MEMORIZED, ["a"] * len(MEMORIZED), noise_levels=(0.1,))
    record = eval_record(report, 1200, "test")
    assert record["step"] == 1200 and record["eval_bleu"] == pytest.approx(100.0)
    assert record["decoding"] == "greedy"
    reranked = evaluate_codec(
        codec, MEMORIZED, ["a"] * len(MEMORIZED), noise_levels=(0.1,), beam_size=3, rerank=True
    )
    assert set(eval_record(reranked, 1200, "test")) == {
        "step",
        "split",
        "decoding",
        "eval_bleu_beam3_rerank",
        "eval_exact_beam3_rerank",
        "eval_bleu_beam3_rerank_noise0.1",
        "eval_exact_beam3_rerank_noise0.1",
    }
    assert set(record) == {
        "step",
        "split",
        "decoding",
        "eval_bleu",
        "eval_exact",
        "eval_bleu_noise0.1",
        "eval_exact_noise0.1",
    }

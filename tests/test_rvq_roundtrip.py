"""``lcm eval-rvq``: decoding RVQ-quantized concepts, per number of codebooks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from codec_fixtures import MEMORIZED, overfitted_codec

from lcm.cli.eval import eval_rvq_main as main
from lcm.eval.rvq import rvq_round_trip


def test_error_falls_with_codebooks_and_one_unit_per_sentence_is_exact() -> None:
    codec = overfitted_codec()
    n = len(MEMORIZED)
    # V = N: the first level gives every sentence its own unit, so it decodes exactly
    exact = rvq_round_trip(codec, MEMORIZED, MEMORIZED, num_codebooks=2, codebook_size=n)
    assert [r.codebooks for r in exact] == [0, 1, 2]
    assert exact[0].exact_match == 1.0  # the unquantized ceiling of a memorizing codec
    assert exact[1].relative_error < 1e-5 and exact[1].exact_match == 1.0
    # V = 2: coarse units; each level explains more of the residual
    coarse = rvq_round_trip(codec, MEMORIZED, MEMORIZED, num_codebooks=3, codebook_size=2)
    errors = [r.relative_error for r in coarse[1:]]
    assert errors[0] > 0.05 and all(np.diff(errors) < 0), errors
    assert coarse[1].bleu < 100.0  # the metric can fail


def test_bad_levels_are_named() -> None:
    with pytest.raises(ValueError, match="levels must lie in 1..2"):
        rvq_round_trip(overfitted_codec(), MEMORIZED, MEMORIZED, num_codebooks=2, levels=[3])


def test_cli_writes_a_table_and_json(tmp_path, capsys) -> None:
    (tmp_path / "train.txt").write_text("\n".join(MEMORIZED * 2) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(MEMORIZED) + "\n")
    np.save(tmp_path / "test.source.npy", np.zeros(len(MEMORIZED), np.uint8))
    (tmp_path / "manifest.json").write_text(json.dumps({"sources": ["memorized"]}))
    model = tmp_path / "codec"
    overfitted_codec().save(model)
    out = tmp_path / "rvq.json"
    argv = ["--data", str(tmp_path), "--codec", str(model), "--codebooks", "2"]
    assert main([*argv, "--codebook-size", "4", "--json", str(out)]) == 0
    assert "| unquantized |" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["codebooks"] for r in rows] == [0, 1, 2]
    assert rows[2]["relative_error"] < rows[1]["relative_error"]
    assert main([*argv, "--codebook-size", "64"]) == 2  # more units than fit sentences

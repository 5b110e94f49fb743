"""`lcm plot`: curves from metrics.jsonl and eval.jsonl."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lcm.plot import moving_average, plot_run, read_jsonl, series


def test_plot_draws_training_and_eval_curves(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    lines = [json.dumps({"step": s, "loss": 5.0 / s, "lr": 1e-3}) for s in range(1, 40)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 40, "lo')  # torn
    evals = [{"step": 10, "eval_bleu": 3.0}, {"step": 30, "eval_bleu": 9.0}]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    out = plot_run(tmp_path)
    assert out == tmp_path / "curves.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert len(records) == 39
    steps, values = series(records + evals, "eval_bleu")
    assert steps.tolist() == [10, 30] and values.tolist() == [3.0, 9.0]
    with pytest.raises(ValueError, match="no metric 'bleu'"):
        plot_run(tmp_path, keys=["bleu"])
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        plot_run(tmp_path / "nowhere")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nbroken\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        read_jsonl(tmp_path / "metrics.jsonl")


def test_moving_average() -> None:
    np.testing.assert_allclose(moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1, 2, 4, 6])

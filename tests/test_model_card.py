"""tools/model_card.py: a card from a run's log and evaluation reports."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
from model_card import run_summary, write_card  # noqa: E402


def test_card_reports_steps_tokens_compute_and_metrics(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("family: base_lcm\nbatch_size: 4\nmodel: {d_model: 8}\n")
    records = [{"step": s, "loss": 1.0 / s, "tokens": 100, "steps_per_s": 2.0} for s in (10, 20)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = run_summary(run)
    assert summary["steps"] == 20 and summary["tokens"] == 200
    assert summary["hours"] == pytest.approx(10 / 3600)
    report = {
        "task": "summarize",
        "data": "pairs",
        "split": "test",
        "items": 3,
        "results": {
            "lead-1": {
                "rouge1": 0.5,
                "rouge2": 0.2,
                "rougeL": 0.4,
                "ovl3": 1.0,
                "rep4": 0.0,
                "words": 9.0,
                "sentences": 1.0,
            }
        },
    }
    (tmp_path / "eval.json").write_text(json.dumps(report))
    card = write_card(run, tmp_path, "Test model", "lcm train x.yaml", [tmp_path / "eval.json"])
    text = card.read_text()
    assert "`lcm train x.yaml`" in text and "20 steps" in text and "200 tokens" in text
    assert "| lead-1 | 50.0 | 20.0 | 40.0 | 100.0 | 0.0 | 9.0 | 1.00 |" in text


def test_card_of_a_fine_tune_lists_the_base_models_training_first(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("family: codec\nbatch_size: 8\nmodel: {d_model: 8}\n")
    record = {"step": 30, "loss": 0.5, "tokens": 900, "steps_per_s": 1.0}
    (run / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    base = "# Old\n\n## Training\n- command: `gpu.sh`\n- 8,051 steps\n\n## Model\n- d 8\n"
    text = write_card(run, tmp_path, "New", "lcm train ft.yaml", [], base_card=base).read_text()
    stage1, stage2 = text.index("### Stage 1"), text.index("### Stage 2")
    assert stage1 < text.index("`gpu.sh`") < text.index("8,051 steps") < stage2
    assert stage2 < text.index("`lcm train ft.yaml`") < text.index("30 steps")
    assert "- d 8" not in text  # only the base card's training section is carried over
    # A fine-tune of that fine-tune nests both earlier stages under its own stage 1.
    again = write_card(run, tmp_path, "Newer", "y", [], base_card=text).read_text()
    assert again.count("\n### Stage") == 2 and again.count("\n#### Stage") == 2
    assert again.index("`gpu.sh`") < again.index("`lcm train ft.yaml`") < again.index("`y`")
    with pytest.raises(ValueError, match="Training"):
        write_card(run, tmp_path, "New", "x", [], base_card="# Old\n\n## Model\n")

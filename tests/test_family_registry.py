"""A new family is one module plus one YAML: a throwaway family trains, exports and loads."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import REPO

from lcm.config import ConfigError, read_yaml, save_yaml
from lcm.models.directory import load_lcm
from lcm.models.protocols import SamplingOptions
from trainers.config import load_train_config
from trainers.loop import train
from trainers.state import load_trained_model
from trainers.tasks import TASKS, get_task

# Written for this test only: a Base-LCM that predicts the change from the current concept.
FAMILY = """
import dataclasses

from lcm.models.base_lcm import BaseLCM, BaseLCMConfig
from lcm.models.family import concept_task


@dataclasses.dataclass(frozen=True)
class ResidualConfig(BaseLCMConfig):
    residual_scale: float = 1.0


class ResidualLCM(BaseLCM):
    def __init__(self, cfg, dim, rngs):
        super().__init__(cfg, dim, rngs)
        self.residual_scale = cfg.residual_scale

    def __call__(self, batch, rng=None):
        return self.residual_scale * batch["concepts"] + super().__call__(batch, rng)


TASK = concept_task("residual_family:TASK", ResidualConfig, ResidualLCM)
"""


@pytest.fixture
def family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "residual_family.py").write_text(textwrap.dedent(FAMILY))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "residual_family:TASK"
    sys.modules.pop("residual_family", None)


def test_a_family_outside_the_package_trains_exports_and_loads(family: str, tmp_path: Path) -> None:
    raw = read_yaml(REPO / "configs" / "lcm" / "base_lcm_tiny.yaml")
    raw.update(family=family, steps=30, log_every=1, run_dir=str(tmp_path / "run"))
    raw["model"]["residual_scale"] = 0.5
    save_yaml(raw, tmp_path / "residual.yaml")  # the family's one YAML
    cfg = load_train_config(tmp_path / "residual.yaml")
    assert family not in TASKS and cfg.model.residual_scale == 0.5

    train(cfg, progress=False)
    losses = [r["loss"] for r in _metrics(tmp_path / "run")]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses

    cfg, model, step = load_trained_model(tmp_path / "run")
    assert step == 30 and type(model).__name__ == "ResidualLCM"
    get_task(family).export(model, cfg.model, cfg.data, str(tmp_path / "model"))
    opened = load_lcm(tmp_path / "model")
    assert opened.config.family == family and opened.model.residual_scale == 0.5
    batch = {
        "concepts": jax.random.normal(jax.random.key(0), (1, 6, opened.config.concept_dim)),
        "segment_ids": np.ones((1, 6), np.int32),
        "positions": np.arange(6, dtype=np.int32)[None],
        "mask": np.ones((1, 6), bool),
    }
    key, options = jax.random.key(1), SamplingOptions()
    np.testing.assert_array_equal(  # the trained weights, not fresh ones
        opened.model.predict_next(batch, key, options), model.predict_next(batch, key, options)
    )


def test_a_task_path_that_does_not_import_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="cannot import no_such_module:TASK"):
        get_task("no_such_module:TASK")
    with pytest.raises(ConfigError, match="unknown family 'no_such_family'"):
        get_task("no_such_family")
    with pytest.raises(ConfigError, match="is not a trainers.Task"):
        get_task("lcm.models.base_lcm:BaseLCM")


def _metrics(run: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

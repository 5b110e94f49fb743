"""Typed configs: YAML + overrides, rejection of unknown keys and wrong types, every shipped
config loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest
import yaml
from conftest import REPO

from lcm.config import ConfigError, apply_overrides, from_dict, load_config, save_yaml, to_dict
from trainers.config import TrainConfig, load_train_config, train_config_from_dict


@dataclasses.dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    kind: Literal["a", "b"] = "a"


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "x"
    steps: int = 10
    sizes: tuple[int, ...] = (1, 2)
    maybe: int | None = None
    flag: bool = False
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_overrides_are_typed_and_nested(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: run\ninner:\n  lr: 3e-4\n")  # YAML 1.1 reads 3e-4 as a string
    cfg = load_config(Outer, path, ["inner.kind=b", "steps=100", "sizes=[4, 5]", "maybe=7"])
    assert cfg == Outer(name="run", steps=100, sizes=(4, 5), maybe=7, inner=Inner(3e-4, "b"))
    assert isinstance(cfg.inner.lr, float)
    assert from_dict(Outer, {"inner": {"lr": 1}}).inner.lr == 1.0  # int widens to float


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stpes": 3}, "unknown config key 'stpes'"),
        ({"inner": {"learning_rate": 1.0}}, "unknown config key 'inner.learning_rate'"),
        ({"steps": "many"}, "config key 'steps': expected int"),
        ({"steps": 1.5}, "config key 'steps': expected int"),
        ({"flag": "yes please"}, "config key 'flag': expected bool"),
        ({"inner": {"kind": "c"}}, "config key 'inner.kind': expected one of 'a', 'b'"),
        ({"sizes": [1, "x"]}, "config key 'sizes[1]': expected int"),
        ({"inner": 3}, "config key 'inner': expected Inner"),
        ({"inner": {"lr": "fast"}}, "config key 'inner.lr': expected float"),
    ],
)
def test_bad_keys_and_types_are_named(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        from_dict(Outer, data)


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["steps"])
    with pytest.raises(ConfigError, match="'steps' is a value, not a section"):
        apply_overrides({"steps": 3}, ["steps.x=1"])


def test_save_round_trip(tmp_path: Path) -> None:
    cfg = Outer(sizes=(3,), inner=Inner(0.5, "b"))
    save_yaml(cfg, tmp_path / "out" / "config.yaml")
    assert from_dict(Outer, yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())) == cfg
    assert to_dict(cfg)["sizes"] == [3]
    assert not list((tmp_path / "out").glob(".*tmp"))  # temp file renamed away


def test_train_config_validates_family_sections() -> None:
    raw = {"family": "mlp_regression", "model": {"hidden": 8}, "steps": 5}
    cfg = train_config_from_dict(raw)
    assert cfg.family == "mlp_regression" and cfg.model.hidden == 8 and cfg.steps == 5
    with pytest.raises(ConfigError, match="unknown config key 'model.hiden'"):
        train_config_from_dict({"family": "mlp_regression", "model": {"hiden": 8}})
    with pytest.raises(ConfigError, match="unknown family 'nope'"):
        train_config_from_dict({"family": "nope"})
    with pytest.raises(ConfigError, match="optim.warmup_steps"):
        train_config_from_dict({"family": "mlp_regression", "optim": {"warmup_steps": "ten"}})
    with pytest.raises(ConfigError, match="steps must be > 0"):
        train_config_from_dict({"family": "mlp_regression", "steps": 0})
    with pytest.raises(ConfigError, match="missing required config key 'family'"):
        train_config_from_dict({"steps": 5})


def test_the_old_task_key_still_reads_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="'task' is deprecated"):
        old = train_config_from_dict({"task": "mlp_regression", "model": {"hidden": 8}})
    assert old == train_config_from_dict({"family": "mlp_regression", "model": {"hidden": 8}})
    with pytest.raises(ConfigError, match="both given"):
        train_config_from_dict({"task": "mlp_regression", "family": "mlp_regression"})


SHIPPED = sorted((REPO / "configs").rglob("*.yaml"))


def test_there_are_shipped_configs() -> None:
    assert SHIPPED, "no configs found under configs/"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_loads(path: Path) -> None:
    cfg = load_train_config(path)
    assert isinstance(cfg, TrainConfig)
    # the resolved config survives a save/load round trip unchanged
    assert train_config_from_dict(to_dict(cfg)) == cfg

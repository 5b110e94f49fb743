"""The trainer core on a small real model: learning, checkpoints, exact resume, NaN stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import REPO
from flax import nnx
from jax.sharding import PartitionSpec as P

from lcm.nn.weights import save_weights, variable_name
from trainers.checkpoint import Checkpointer
from trainers.config import MeshConfig, OptimConfig, load_train_config
from trainers.loop import KILL_AFTER_STEP_ENV, NonFiniteLossError, train
from trainers.mesh import logical_to_mesh_spec, make_mesh, mesh_shape
from trainers.optim import learning_rate_schedule
from trainers.state import load_trained_model

CONFIG = REPO / "configs/examples/mlp_regression.yaml"


def read_metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def tiny(run_dir: Path, *extra: str):
    return load_train_config(
        CONFIG,
        [f"run_dir={run_dir}", "steps=40", "log_every=1", "checkpoint.every=10", *extra],
    )


def test_loss_goes_down_and_run_dir_is_complete(tmp_path: Path) -> None:
    cfg = load_train_config(CONFIG, [f"run_dir={tmp_path}", "steps=200", "log_every=20"])
    result = train(cfg, progress=False)
    losses = [r["loss"] for r in read_metrics(tmp_path)]
    assert len(losses) == 10
    assert losses[-1] < 0.25 * losses[0], losses
    assert result.step == 200 and result.resumed_from is None
    assert (tmp_path / "config.yaml").is_file()
    assert load_train_config(tmp_path / "config.yaml") == cfg  # resolved config reloads
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [
        "100",
        "200",
    ]


def test_stop_then_resume_continues_exactly(tmp_path: Path) -> None:
    """40 steps straight vs. 20 steps, stop, resume to 40: the same loss sequence."""
    train(tiny(tmp_path / "full"), progress=False)
    first = train(tiny(tmp_path / "split"), progress=False, stop_at=20)
    assert first.step == 20 and max(r["step"] for r in read_metrics(tmp_path / "split")) == 20
    second = train(tiny(tmp_path / "split"), progress=False)
    assert second.resumed_from == 20 and second.step == 40
    full = [r["loss"] for r in read_metrics(tmp_path / "full")]
    split = [r["loss"] for r in read_metrics(tmp_path / "split")]
    assert len(full) == 40 and full == split


def test_time_limit_stops_at_a_logging_step_and_resumes_exactly(tmp_path: Path) -> None:
    """A spent time limit stops at the first logging step, with a checkpoint there."""
    train(tiny(tmp_path / "full", "log_every=7"), progress=False)
    cfg = tiny(tmp_path / "timed", "log_every=7")
    first = train(cfg, progress=False, time_limit_s=0.0)
    assert first.step == 7
    assert Checkpointer(tmp_path / "timed" / "checkpoints", every=10, keep=3).all_steps() == [7]
    second = train(cfg, progress=False)
    assert second.resumed_from == 7 and second.step == 40
    full = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "full")]
    timed = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "timed")]
    assert len(full) > 6 and timed == full


def test_init_from_starts_a_fresh_run_from_trained_weights(tmp_path: Path) -> None:
    """A run initialized from a trained run starts at its loss, with a fresh optimizer."""
    train(tiny(tmp_path / "base", "steps=60"), progress=False)
    trained = read_metrics(tmp_path / "base")
    for source in (tmp_path / "base", tmp_path / "model.npz"):
        if source.suffix == ".npz":
            _, model, _ = load_trained_model(tmp_path / "base")
            save_weights(model, source)
        run = tmp_path / f"tuned_{source.name}"
        result = train(tiny(run, "steps=3", f"init_from={source}"), progress=False)
        tuned = read_metrics(run)
        assert result.resumed_from is None
        # step 1 of the new run sees the trained weights: far below a fresh run's first loss
        assert tuned[0]["loss"] < 0.3 * trained[0]["loss"], (tuned[0], trained[0])
        assert tuned[0]["loss"] < 2 * trained[-1]["loss"] + 1e-3


def test_init_from_names_a_missing_or_mismatched_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train(tiny(tmp_path / "a", f"init_from={tmp_path / 'nowhere'}"), progress=False)
    train(tiny(tmp_path / "small", "steps=2", "model.hidden=16"), progress=False)
    with pytest.raises(ValueError, match="shape"):
        train(tiny(tmp_path / "b", f"init_from={tmp_path / 'small'}"), progress=False)


def _flat_params(run_dir: Path) -> dict[str, np.ndarray]:
    _, model, _ = load_trained_model(run_dir)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return {variable_name(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}


def test_frozen_parameters_stay_fixed_while_the_rest_learns(tmp_path: Path) -> None:
    """optim.frozen: the named subtree is bit-identical after training (weight decay on), the
    other layers move and the loss still falls; resuming keeps them frozen."""
    train(tiny(tmp_path / "base", "steps=5"), progress=False)
    before = _flat_params(tmp_path / "base")
    run = tmp_path / "frozen"
    cfg = tiny(
        run,
        "steps=40",
        f"init_from={tmp_path / 'base'}",
        "optim.weight_decay=0.1",
        "optim.frozen=[layers/0]",
    )
    train(cfg, progress=False, stop_at=20)
    train(cfg, progress=False)
    after = _flat_params(run)
    frozen = [k for k in before if k.startswith("layers/0/")]
    moving = [k for k in before if not k.startswith("layers/0/")]
    assert frozen and moving
    for k in frozen:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert all(not np.array_equal(after[k], before[k]) for k in moving)
    losses = [r["loss"] for r in read_metrics(run)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_frozen_prefixes_must_name_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\['layer'\] match no parameter"):
        train(tiny(tmp_path / "a", "optim.frozen=[layer]"), progress=False)
    with pytest.raises(ValueError, match="freezes every parameter"):
        train(tiny(tmp_path / "b", "optim.frozen=[layers,head]"), progress=False)
    with pytest.raises(ValueError, match="empty parameter path"):
        OptimConfig(frozen=("/",))


def _run_cli(run_dir: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env_extra}
    cmd = [
        sys.executable,
        "-m",
        "lcm.cli",
        "train",
        str(CONFIG),
        f"run_dir={run_dir}",
        "steps=60",
        "log_every=1",
        "checkpoint.every=10",
        "--no-progress",
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_sigkill_then_resume_gives_identical_loss_sequence(tmp_path: Path) -> None:
    straight = _run_cli(tmp_path / "straight", {})
    assert straight.returncode == 0, straight.stderr
    killed = _run_cli(tmp_path / "killed", {KILL_AFTER_STEP_ENV: "27"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    steps_before = [r["step"] for r in read_metrics(tmp_path / "killed")]
    assert max(steps_before) == 27  # it really died mid-way, past the step-20 checkpoint
    resumed = _run_cli(tmp_path / "killed", {})
    assert resumed.returncode == 0, resumed.stderr
    a = read_metrics(tmp_path / "straight")
    b = read_metrics(tmp_path / "killed")
    assert [r["step"] for r in b] == list(range(1, 61))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # bit-identical
    ckpts = sorted(int(p.name) for p in (tmp_path / "killed" / "checkpoints").iterdir())
    assert ckpts[-1] == 60


def test_nan_loss_stops_naming_the_step(tmp_path: Path) -> None:
    cfg = tiny(tmp_path, "optim.lr=1e30", "optim.clip_norm=0.0", "optim.warmup_steps=0")
    with pytest.raises(NonFiniteLossError, match=r"at step \d+") as info:
        train(cfg, progress=False)
    bad_step = int(str(info.value).split("at step ")[1].split(";")[0])
    good = [r["step"] for r in read_metrics(tmp_path)]
    assert all(s < bad_step for s in good)
    # no checkpoint holds the non-finite state
    ckpts = [int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    assert all(s < bad_step for s in ckpts)


def test_corrupt_latest_checkpoint_falls_back(tmp_path: Path) -> None:
    train(tiny(tmp_path, "steps=20"), progress=False)
    for f in (tmp_path / "checkpoints" / "20").rglob("*"):  # damage every file of the newest
        if f.is_file():
            f.write_bytes(b"garbage")
    result = train(tiny(tmp_path, "steps=20"), progress=False)
    assert result.resumed_from == 10 and result.step == 20
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert "20" in names and any(n.startswith("20.corrupt-") for n in names)
    assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 21))


def test_learning_rate_schedule_shape() -> None:
    sched = learning_rate_schedule(
        OptimConfig(lr=1.0, warmup_steps=10, end_lr_ratio=0.1, decay="cosine"), 110
    )
    assert float(sched(0)) == 0.0
    assert float(sched(10)) == pytest.approx(1.0)
    assert float(sched(110)) == pytest.approx(0.1)
    assert float(sched(60)) == pytest.approx(0.55, abs=1e-6)


def test_wsd_schedule_is_stable_then_cools_down() -> None:
    cfg = OptimConfig(lr=1.0, warmup_steps=10, decay="wsd", cooldown_steps=20, end_lr_ratio=0.0)
    short, longer = learning_rate_schedule(cfg, 100), learning_rate_schedule(cfg, 200)
    assert float(short(5)) == pytest.approx(0.5)
    assert [float(short(s)) for s in (10, 50, 80)] == [1.0, 1.0, 1.0]
    assert float(short(90)) == pytest.approx(0.5) and float(short(100)) == pytest.approx(0.0)
    # extending the run while stable changes no step already taken
    assert all(float(short(s)) == float(longer(s)) for s in range(0, 80, 7))


def test_mesh_rules_and_shapes() -> None:
    assert mesh_shape(MeshConfig(data=-1, fsdp=1, model=1), 1) == (1, 1, 1)
    assert mesh_shape(MeshConfig(data=2, fsdp=-1, model=2), 8) == (2, 2, 2)
    with pytest.raises(ValueError, match="needs 4 devices"):
        mesh_shape(MeshConfig(data=2, fsdp=2, model=1), 8)
    mesh = make_mesh(MeshConfig())
    # On one device every axis has size 1, so everything is replicated.
    assert logical_to_mesh_spec(P("embed", "mlp"), (8, 16), mesh) == P(None, None)
    with pytest.raises(KeyError, match="no rule"):
        logical_to_mesh_spec(P("bogus"), (8,), mesh)


def test_checkpointer_round_trip(tmp_path: Path) -> None:
    tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "n": {0: np.ones(2, np.int32)}}
    tree = jax.tree.map(jax.numpy.asarray, tree)
    ck = Checkpointer(tmp_path, every=1, keep=2)
    ck.save(3, tree, {"data_step": 3})
    ck.wait()
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree
    )
    step, restored, meta = ck.restore_latest(abstract)
    ck.close()
    assert step == 3 and meta == {"data_step": 3}
    jax.tree.map(np.testing.assert_array_equal, tree, restored)


def test_gradient_accumulation_matches_full_batch(tmp_path: Path) -> None:
    train(tiny(tmp_path / "full", "steps=8"), progress=False)
    train(tiny(tmp_path / "accum", "steps=8", "grad_accum=4"), progress=False)
    full = [r["loss"] for r in read_metrics(tmp_path / "full")]
    accum = [r["loss"] for r in read_metrics(tmp_path / "accum")]
    assert accum == pytest.approx(full, rel=1e-5)
    with pytest.raises(Exception, match="not divisible by grad_accum"):
        tiny(tmp_path / "bad", "grad_accum=5")


def test_bfloat16_compute_keeps_float32_master_weights(tmp_path: Path) -> None:
    train(tiny(tmp_path / "f32", "steps=30"), progress=False)
    train(tiny(tmp_path / "bf16", "steps=30", "compute_dtype=bfloat16"), progress=False)
    f32 = [r["loss"] for r in read_metrics(tmp_path / "f32")]
    bf16 = [r["loss"] for r in read_metrics(tmp_path / "bf16")]
    assert bf16 != f32  # really computed in bf16 ...
    assert bf16 == pytest.approx(f32, rel=0.05)  # ... and close to the float32 run
    assert bf16[-1] < 0.5 * bf16[0]
    _, model, _ = load_trained_model(tmp_path / "bf16")
    assert {str(p.dtype) for p in jax.tree.leaves(nnx.state(model, nnx.Param))} == {"float32"}

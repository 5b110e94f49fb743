"""Multi-device and multi-process training on CPU (forced host devices, in subprocesses).

- one step on a (data, fsdp, model) = (2, 2, 2) mesh equals one step on one device;
- 2 processes x 2 devices (``lcm launch``) give the losses of 1 process x 4 devices;
- a checkpoint saved on 8 devices restores on 1 and on 4 with identical values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

WORKER = str(REPO / "tests/dist_worker.py")
COMMON = ["log_every=1", "checkpoint.every=100", "model.hidden=64", "batch_size=32"]


def run(args: list[str], devices: int, launch: int | None = None) -> None:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    if launch is None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        cmd = [sys.executable, WORKER, *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "lcm.cli",
            "launch",
            "-n",
            str(launch),
            "--devices-per-process",
            str(devices),
            "--",
            sys.executable,
            WORKER,
            *args,
        ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def params(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k.startswith("[")}


def test_sharded_step_matches_single_device(tmp_path: Path) -> None:
    args = ["steps=1", *COMMON]
    run(["train", str(tmp_path / "one"), str(tmp_path / "one.npz"), *args], devices=1)
    mesh = ["mesh.data=2", "mesh.fsdp=2", "mesh.model=2"]
    run(["train", str(tmp_path / "eight"), str(tmp_path / "eight.npz"), *args, *mesh], devices=8)
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "eight"), rel=1e-6)
    a, b = params(tmp_path / "one.npz"), params(tmp_path / "eight.npz")
    assert a.keys() == b.keys() and len(a) == 6
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_two_processes_match_one_process(tmp_path: Path) -> None:
    args = ["steps=5", *COMMON, "mesh.data=2", "mesh.fsdp=2"]
    run(["train", str(tmp_path / "single"), str(tmp_path / "single.npz"), *args], devices=4)
    run(["train", str(tmp_path / "multi"), str(tmp_path / "multi.npz"), *args], 2, launch=2)
    single, multi = losses(tmp_path / "single"), losses(tmp_path / "multi")
    assert len(single) == 5
    assert multi == pytest.approx(single, rel=1e-6)


def test_checkpoint_restores_onto_other_mesh_shapes(tmp_path: Path) -> None:
    mesh = ["mesh.data=2", "mesh.fsdp=2", "mesh.model=2"]
    run_dir = tmp_path / "run"
    run(["train", str(run_dir), str(tmp_path / "8.npz"), "steps=3", *COMMON, *mesh], devices=8)
    run(["dump", str(run_dir), str(tmp_path / "1.npz")], devices=1)
    run(["dump", str(run_dir), str(tmp_path / "4.npz")], devices=4)
    ref = params(tmp_path / "8.npz")
    for n in (1, 4):
        with np.load(tmp_path / f"{n}.npz") as z:
            assert int(z["n_devices"]) == n and int(z["step"]) == 3
        got = params(tmp_path / f"{n}.npz")
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=k)

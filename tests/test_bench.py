"""tools/bench.py: the meshes of each sharding, and one small scaling run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import bench  # noqa: E402


def test_plan_meshes() -> None:
    shardings = ["data", "fsdp", "fsdp+model"]
    assert bench.plan_meshes(shardings, 1) == [("data", (1, 1, 1))]  # all the same mesh
    assert bench.plan_meshes(shardings, 8) == [
        ("data", (8, 1, 1)),
        ("fsdp", (1, 8, 1)),
        ("fsdp+model", (1, 4, 2)),
    ]
    assert bench.plan_meshes(["fsdp+model"], 3) == []
    with pytest.raises(ValueError, match="unknown sharding"):
        bench.plan_meshes(["pipeline"], 2)


def test_scaling_report_runs(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    cmd = [
        sys.executable,
        str(REPO / "tools/bench.py"),
        "scaling",
        "--quick",
        "--devices",
        "2",
        "--shardings",
        "data,fsdp",
        "--config",
        "configs/examples/mlp_regression.yaml",
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, timeout=600, env=os.environ
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "correctness-grade only" in proc.stdout and "| 2 | fsdp | (1, 2, 1) |" in proc.stdout
    data, fsdp = json.loads(out.read_text())["records"]
    assert data["param_arrays_sharded"] == 0 and fsdp["param_arrays_sharded"] > 0
    assert fsdp["param_bytes_per_device"] < data["param_bytes_per_device"]
    assert fsdp["opt_bytes_per_device"] < data["opt_bytes_per_device"]
    assert data["step_ms"] > 0 and data["tokens_per_s"] is None  # the MLP counts no tokens

"""Every model shards: one train step on a (data, fsdp, model) = (2, 2, 2) mesh of 8 forced
CPU devices equals the same step on one device, for the codec and each LCM tiny config.

Both device counts run in subprocesses (``tests/dist_worker.py steps``, the trainer's own
step), at the same time; each process takes the steps of every config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from codec_fixtures import prepared_data
from conftest import REPO

WORKER = str(REPO / "tests/dist_worker.py")
CONFIGS = {
    "codec": "configs/encoders/codec_tiny.yaml",
    "base_lcm": "configs/lcm/base_lcm_tiny.yaml",
    "two_tower": "configs/lcm/two_tower_tiny.yaml",
    "one_tower": "configs/lcm/one_tower_tiny.yaml",
    "quant_lcm_d": "configs/lcm/quant_lcm_d_tiny.yaml",
    "quant_lcm_c": "configs/lcm/quant_lcm_c_tiny.yaml",
}
MESHES = {1: [], 8: ["mesh.data=2", "mesh.fsdp=2", "mesh.model=2"]}


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], dict]:
    """``(config name, devices) -> dump`` of the first step of every config on 1 and 8 devices."""
    root = tmp_path_factory.mktemp("sharding")
    extra = {"codec": [f"data.data_dir={prepared_data()}"]}
    procs = {}
    for devices, mesh in MESHES.items():
        plan = [
            {
                "config": str(REPO / path),
                "overrides": [*extra.get(name, []), *mesh],
                "out": str(root / f"{name}-{devices}.npz"),
            }
            for name, path in CONFIGS.items()
        ]
        (root / f"plan-{devices}.json").write_text(json.dumps(plan))
        # Without LLVM optimizations XLA compiles about twice as fast; compiling is most of
        # this test's time, and the sharding does not depend on how well the code is tuned.
        flags = (
            f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
        )
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
        procs[devices] = subprocess.Popen(
            [sys.executable, WORKER, "steps", str(root / f"plan-{devices}.json")],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    for devices, proc in procs.items():
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{devices} devices:\n{out[-4000:]}"
    out = {}
    for name in CONFIGS:
        for devices in MESHES:
            with np.load(root / f"{name}-{devices}.npz") as z:
                out[name, devices] = {k: z[k] for k in z.files}
    return out


@pytest.mark.parametrize("name", CONFIGS)
def test_step_on_2x2x2_mesh_matches_one_device(
    name: str, dumps: dict[tuple[str, int], dict]
) -> None:
    one, eight = dumps[name, 1], dumps[name, 8]
    assert int(eight["n_devices"]) == 8
    print(
        f"{name}: {int(eight['sharded'])}/{int(eight['arrays'])} parameter arrays sharded; "
        f"bytes per device: parameters {int(one['bytes_per_device'])} -> "
        f"{int(eight['bytes_per_device'])}, optimizer state {int(one['opt_bytes_per_device'])} "
        f"-> {int(eight['opt_bytes_per_device'])}"
    )
    assert float(eight["loss"]) == pytest.approx(float(one["loss"]), rel=1e-5)
    names = [k for k in one if k.startswith("[")]
    assert names and sorted(names) == sorted(k for k in eight if k.startswith("["))
    for k in names:
        np.testing.assert_allclose(eight[k], one[k], rtol=1e-4, atol=1e-5, err_msg=k)
    # Really sharded: fsdp x model splits the parameters and the optimizer state at least
    # 2-fold per device (a few small vectors stay replicated).
    assert int(eight["sharded"]) > int(eight["arrays"]) // 2
    assert int(eight["bytes_per_device"]) < int(one["bytes_per_device"]) // 2
    assert int(eight["opt_bytes_per_device"]) < int(one["opt_bytes_per_device"]) // 2

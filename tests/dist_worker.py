"""Subprocess worker for the multi-device tests (the device count is fixed at JAX start-up).

Usage: python tests/dist_worker.py train|dump RUN_DIR OUT.npz [key=value ...]
- train: train the MLP config with the overrides, then dump the final parameters;
- dump: restore the run's newest checkpoint onto this process's devices and dump them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

from trainers.config import MeshConfig, load_train_config
from trainers.distributed import initialize_from_env
from trainers.loop import train
from trainers.state import load_trained_model

CONFIG = Path(__file__).resolve().parents[1] / "configs/examples/mlp_regression.yaml"


def dump(run_dir: str, out: str) -> None:
    _, model, step = load_trained_model(run_dir, MeshConfig(data=-1))
    flat = jax.tree_util.tree_flatten_with_path(jax.tree.map(np.asarray, _params(model)))[0]
    if jax.process_index() == 0:
        arrays = {jax.tree_util.keystr(k): v for k, v in flat}
        np.savez(out, step=step, n_devices=jax.device_count(), **arrays)


def _params(model):
    from flax import nnx

    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def main() -> None:
    mode, run_dir, out, *overrides = sys.argv[1:]
    initialize_from_env()
    if mode == "train":
        cfg = load_train_config(CONFIG, [f"run_dir={run_dir}", *overrides])
        train(cfg, progress=False)
    dump(run_dir, out)


if __name__ == "__main__":
    main()

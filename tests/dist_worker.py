"""Subprocess worker for the multi-device tests (the device count is fixed at JAX start-up).

Usage (``--config`` goes before the positional arguments):
    python tests/dist_worker.py train [--config PATH] RUN_DIR OUT.npz [key=value ...]
    python tests/dist_worker.py dump RUN_DIR OUT.npz
    python tests/dist_worker.py steps PLAN.json

- train: train ``--config`` (default: the MLP example) with the overrides, then dump the final
  parameters as restored onto the training mesh;
- dump: restore the run's newest checkpoint onto this process's devices (all on the data axis)
  and dump them;
- steps: for each job ``{"config", "overrides", "out"}`` of the JSON list, take the first
  train step of the config (the trainer's own step, no checkpoints) and dump the parameters
  after it, with its ``loss`` and the optimizer state's layout (``opt_sharded``,
  ``opt_bytes_per_device``). One process runs them all, so JAX starts once.

A dump holds every parameter (keyed by its path, gathered from all processes), ``step``,
``n_devices`` and the parameters' layout on the mesh: ``arrays``, ``sharded`` (arrays split
over some mesh axis) and ``bytes_per_device``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from trainers.config import MeshConfig, load_train_config
from trainers.distributed import initialize_from_env
from trainers.loop import prepare, train
from trainers.mesh import sharding_stats
from trainers.state import load_trained_model

MLP_CONFIG = Path(__file__).resolve().parents[1] / "configs/examples/mlp_regression.yaml"


def save(out: str, params: Any, step: int, **extra: Any) -> None:
    """Write ``params`` (a pure dict of possibly sharded arrays) and their layout to ``out``."""
    stats = sharding_stats(params)
    # Sharded arrays may live partly in other processes: gather them before going to numpy.
    full = jax.tree.map(np.asarray, multihost_utils.process_allgather(params, tiled=True))
    if jax.process_index() == 0:
        flat = jax.tree_util.tree_flatten_with_path(full)[0]
        np.savez(
            out,
            step=step,
            n_devices=jax.device_count(),
            arrays=stats.arrays,
            sharded=stats.sharded,
            bytes_per_device=stats.bytes_per_device,
            **extra,
            **{jax.tree_util.keystr(k): v for k, v in flat},
        )


def dump(run_dir: str, out: str, mesh: MeshConfig) -> None:
    """Restore ``run_dir`` onto ``mesh`` and save its parameters to ``out``."""
    _, model, step = load_trained_model(run_dir, mesh)
    save(out, nnx.to_pure_dict(nnx.state(model, nnx.Param)), step)


def one_step(config: str, overrides: list[str], out: str) -> None:
    """Take the first train step of ``config`` and save the parameters after it."""
    run = prepare(load_train_config(config, overrides))
    state = run.layout.init()
    with jax.set_mesh(run.mesh):
        state, metrics = run.step(state, run.batch(0))
    opt = sharding_stats(state["opt_state"])
    save(
        out,
        state["params"],
        1,
        loss=float(metrics["loss"]),
        opt_sharded=opt.sharded,
        opt_bytes_per_device=opt.bytes_per_device,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    modes = parser.add_subparsers(dest="mode", required=True)
    train_args = modes.add_parser("train")
    train_args.add_argument("--config", default=str(MLP_CONFIG))
    train_args.add_argument("run_dir")
    train_args.add_argument("out")
    train_args.add_argument("overrides", nargs="*")
    dump_args = modes.add_parser("dump")
    dump_args.add_argument("run_dir")
    dump_args.add_argument("out")
    modes.add_parser("steps").add_argument("plan")
    args = parser.parse_args()
    initialize_from_env()
    if args.mode == "train":
        cfg = load_train_config(args.config, [f"run_dir={args.run_dir}", *args.overrides])
        train(cfg, progress=False)
        dump(args.run_dir, args.out, cfg.mesh)
    elif args.mode == "dump":
        dump(args.run_dir, args.out, MeshConfig(data=-1))
    else:
        for job in json.loads(Path(args.plan).read_text()):
            one_step(job["config"], job["overrides"], job["out"])


if __name__ == "__main__":
    main()

"""``lcm train`` and ``lcm export``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lcm.cli.args import positive_float
from lcm.config import ConfigError
from lcm.text.readers import DataError
from trainers.checkpoint import CheckpointError
from trainers.config import load_train_config
from trainers.distributed import initialize_from_env
from trainers.loop import NonFiniteLossError, TrainingInterrupted, train
from trainers.run_dir import RunLockedError
from trainers.state import load_trained_model
from trainers.tasks import get_task


def train_main(argv: Sequence[str]) -> int:
    """``lcm train CONFIG [key=value ...]``: run or resume a training run."""
    parser = argparse.ArgumentParser(
        prog="lcm train",
        description="Train a model from a YAML config. Extra key=value arguments override "
        "config entries (dotted keys for sections), e.g. optim.lr=3e-4 steps=100.",
    )
    parser.add_argument("config", help="YAML config, e.g. configs/examples/mlp_regression.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="start afresh: a previous run in run_dir moves to run_dir/previous-<time>/",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--time-limit",
        type=positive_float,
        metavar="MINUTES",
        help="stop with a checkpoint at the first logging step after this much wall time "
        "(the schedule still spans `steps`; a rerun resumes exactly)",
    )
    args = parser.parse_intermixed_args(argv)  # options may follow the overrides

    initialize_from_env()  # before any JAX computation; a no-op for single-process runs

    try:
        cfg = load_train_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"lcm train: {e}", file=sys.stderr)
        return 2
    try:
        result = train(
            cfg,
            resume=not args.no_resume,
            progress=not args.no_progress,
            time_limit_s=None if args.time_limit is None else 60 * args.time_limit,
        )
    except TrainingInterrupted as e:
        print(
            f"lcm train: interrupted; saved a checkpoint at step {e.step} in {cfg.run_dir} "
            "(rerun the same command to resume)",
            file=sys.stderr,
        )
        return 130
    except ConfigError as e:
        print(f"lcm train: {e}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, FileExistsError, FileNotFoundError, DataError) as e:
        print(f"lcm train: {e}", file=sys.stderr)
        return 1
    except RunLockedError as e:
        print(f"lcm train: {e}", file=sys.stderr)
        return 1
    last = result.last_metrics
    summary = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "step")
    print(f"finished {cfg.family} at step {result.step} in {result.run_dir}: {summary}")
    return 0


def export_main(argv: Sequence[str]) -> int:
    """``lcm export RUN_DIR OUT_DIR``: the newest checkpoint of a run as a model directory."""
    parser = argparse.ArgumentParser(
        prog="lcm export",
        description="Write the model directory of a training run (config.yaml, weights.npz, "
        "and what the model family needs: tokenizer.model, normalizer.npz, card.md).",
    )
    parser.add_argument("run_dir", help="a run directory written by `lcm train`")
    parser.add_argument("out_dir", help="where to write the model directory")
    args = parser.parse_args(argv)

    try:
        cfg, model, step = load_trained_model(args.run_dir)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"lcm export: {e}", file=sys.stderr)
        return 2
    task = get_task(cfg.family)
    if task.export is None:
        print(f"lcm export: family {cfg.family!r} has no model-directory format", file=sys.stderr)
        return 2
    task.export(model, cfg.model, cfg.data, args.out_dir)
    print(f"exported {cfg.family} step {step} from {args.run_dir} to {args.out_dir}")
    return 0

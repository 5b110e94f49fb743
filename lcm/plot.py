"""``lcm plot RUN_DIR``: learning curves of a run as a PNG.

Reads ``metrics.jsonl`` (the trainer's log: loss and friends every ``log_every`` steps) and,
when present, ``eval.jsonl`` (evaluations of checkpoints, e.g. ``lcm eval-codec RUN_DIR``
appends round-trip BLEU there). One panel per metric, against the training step; the loss
panel also shows a moving average, since logged losses of small batches are noisy.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lcm.io import write_bytes_atomic

# Training metrics drawn when present, in this order (evaluation metrics follow).
TRAIN_KEYS = ("loss", "accuracy", "mse", "l2", "grad_norm", "lr")


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file; a torn last line (a run killed mid-write) is skipped.

    Raises:
        ValueError: A line other than the last is not JSON (naming the line).
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):
                break
            raise ValueError(f"{path}:{i}: not JSON ({e})") from e
    return out


def series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``key`` over the records that have it (last record per step)."""
    by_step = {int(r["step"]): float(r[key]) for r in records if key in r and "step" in r}
    steps = np.array(sorted(by_step), np.int64)
    return steps, np.array([by_step[s] for s in steps], np.float64)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (shorter at the start)."""
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (cumsum[idx] - cumsum[lo]) / (idx - lo)


def plot_run(run_dir: str | Path, out: str | Path | None = None, keys: Sequence[str] = ()) -> Path:
    """Draw the curves of ``run_dir`` to ``out`` (default ``RUN_DIR/curves.png``).

    Args:
        run_dir: A training run directory.
        out: PNG path.
        keys: Metrics to draw (default: the known training metrics present, then every
            ``eval_*`` metric).

    Raises:
        FileNotFoundError: No ``metrics.jsonl`` in ``run_dir``.
        ValueError: Nothing to draw, or a requested metric is absent.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir).expanduser()
    metrics_file = run / "metrics.jsonl"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{metrics_file} not found (is {run} a training run directory?)")
    records = read_jsonl(metrics_file)
    if (run / "eval.jsonl").is_file():
        records += read_jsonl(run / "eval.jsonl")
    present = {k for r in records for k in r}
    if keys:
        missing = [k for k in keys if k not in present]
        if missing:
            raise ValueError(f"{run}: no metric {missing[0]!r} (has {sorted(present)})")
    else:
        keys = [k for k in TRAIN_KEYS if k in present]
        keys += sorted(k for k in present if k.startswith("eval_"))
    if not keys:
        raise ValueError(f"{run}: no metric to draw")
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        steps, values = series(records, key)
        if key == "loss" and len(values) > 10:
            ax.plot(steps, values, color="0.75", linewidth=0.8, label="logged")
            window = max(len(values) // 50, 5)
            ax.plot(steps, moving_average(values, window), label=f"mean of {window}")
            ax.legend(fontsize=8)
        else:
            ax.plot(steps, values, marker="o" if len(values) < 30 else None, markersize=3)
        if key in ("loss", "grad_norm", "mse") and np.all(values > 0):
            ax.set_yscale("log")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    fig.suptitle(str(run), fontsize=9)
    fig.tight_layout()
    target = Path(out) if out else run / "curves.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(target, buffer.getvalue())
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """``lcm plot RUN_DIR [--out PNG] [--keys a,b]``."""
    parser = argparse.ArgumentParser(
        prog="lcm plot", description="Draw a run's loss and evaluation curves to a PNG."
    )
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--out", help="PNG path (default RUN_DIR/curves.png)")
    parser.add_argument("--keys", default="", help="comma-separated metrics (default: all known)")
    args = parser.parse_args(argv)
    try:
        target = plot_run(args.run_dir, args.out, [k for k in args.keys.split(",") if k])
    except ModuleNotFoundError as e:
        print(f"lcm plot: needs matplotlib ({e}): pip install 'lcm-jax[plot]'", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        print(f"lcm plot: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {target}")
    return 0

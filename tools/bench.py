"""Benchmarks of lcm-jax, one subcommand each.

``scaling``: step time, throughput and per-device memory of parameters and optimizer state
for 1, 2, 4 and 8 devices under several shardings of the ``('data', 'fsdp', 'model')`` mesh::

    python tools/bench.py scaling [--config configs/lcm/base_lcm_tiny.yaml] [--quick] \\
        [--devices 1,2,4,8] [--shardings data,fsdp,fsdp+model] [--out scaling.json] \\
        [key=value ...]

Each device count runs in its own process (the device count is fixed when JAX starts): on
CPU with ``--xla_force_host_platform_device_count=N``, so the forced devices share the host's
cores and the times check that sharded steps run, not how fast they would be; on GPU with
the first N visible GPUs. The step is the trainer's own (``trainers.loop.prepare``); memory
is read from the state's shardings, so it is exact for any device count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from trainers.config import load_train_config
from trainers.launch import with_host_devices
from trainers.loop import prepare
from trainers.mesh import sharding_stats

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/lcm/base_lcm_tiny.yaml"
RECORD_PREFIX = "BENCH_RECORD "  # marks the worker's result lines among its other output


def mesh_for(sharding: str, devices: int) -> tuple[int, int, int] | None:
    """``(data, fsdp, model)`` of a named sharding on ``devices`` devices, or None if it has
    no such mesh (tensor parallelism needs an even device count)."""
    if sharding == "data":
        return (devices, 1, 1)
    if sharding == "fsdp":
        return (1, devices, 1)
    if sharding == "fsdp+model":
        return (1, devices // 2, 2) if devices % 2 == 0 else None
    raise ValueError(f"unknown sharding {sharding!r} (known: data, fsdp, fsdp+model)")


def plan_meshes(shardings: Sequence[str], devices: int) -> list[tuple[str, tuple[int, int, int]]]:
    """The distinct meshes to time on ``devices`` devices, each under its first name."""
    seen: dict[tuple[int, int, int], str] = {}
    for name in shardings:
        mesh = mesh_for(name, devices)
        if mesh is not None and mesh not in seen:
            seen[mesh] = name
    return [(name, mesh) for mesh, name in seen.items()]


def time_steps(config: str, overrides: Sequence[str], warmup: int, steps: int) -> dict[str, Any]:
    """Time the train step of ``config`` on this process's devices.

    The same batch is fed to every step (one compiled shape; step time does not depend on
    the values), and each step is waited for, so its time is the wall time of one step
    (dispatch included, data loading not).

    Returns:
        One record: mesh, step times, throughput and per-device memory.
    """
    cfg = load_train_config(config, overrides)
    run = prepare(cfg)
    state = run.layout.init()
    batch = run.batch(0)
    times = []
    with jax.set_mesh(run.mesh):
        for _ in range(warmup + steps):
            start = time.perf_counter()
            state, metrics = run.step(state, batch)
            jax.block_until_ready((state, metrics))
            times.append(time.perf_counter() - start)
    timed = times[warmup:]
    step_s = statistics.median(timed)
    params = sharding_stats(run.layout.abstract["params"])
    opt = sharding_stats(run.layout.abstract["opt_state"])
    tokens = float(metrics["tokens"]) if "tokens" in metrics else None
    return {
        "devices": jax.device_count(),
        "mesh": list(run.mesh.devices.shape),
        "batch_size": cfg.batch_size,
        "first_step_s": times[0],  # includes compilation
        "step_ms": 1e3 * step_s,
        "step_ms_min": 1e3 * min(timed),
        "step_ms_max": 1e3 * max(timed),
        "items_per_s": cfg.batch_size / step_s,
        "tokens_per_s": None if tokens is None else tokens / step_s,
        "param_arrays": params.arrays,
        "param_arrays_sharded": params.sharded,
        "param_bytes": params.total_bytes,
        "param_bytes_per_device": params.bytes_per_device,
        "opt_bytes_per_device": opt.bytes_per_device,
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
    }


def scaling_worker(args: argparse.Namespace) -> int:
    """One device count of ``scaling``: print one record line per sharding."""
    if jax.device_count() != args.devices:
        raise SystemExit(f"expected {args.devices} devices, JAX sees {jax.device_count()}")
    for name, (data, fsdp, model) in plan_meshes(args.shardings.split(","), args.devices):
        mesh = [f"mesh.data={data}", f"mesh.fsdp={fsdp}", f"mesh.model={model}"]
        record = time_steps(args.config, [*args.overrides, *mesh], args.warmup, args.steps)
        print(RECORD_PREFIX + json.dumps({"sharding": name, **record}), flush=True)
    return 0


def worker_env(platform: str, devices: int) -> dict[str, str]:
    """Environment of the process that sees exactly ``devices`` devices."""
    if platform == "cpu":
        return {**with_host_devices(dict(os.environ), devices), "JAX_PLATFORMS": "cpu"}
    visible = ",".join(str(i) for i in range(devices))
    return {**os.environ, "CUDA_VISIBLE_DEVICES": visible, "JAX_PLATFORMS": "cuda"}


def _size(n: int) -> str:
    """Bytes in KiB below 1 MiB, else in MiB."""
    return f"{n / 2**10:.1f} KiB" if n < 2**20 else f"{n / 2**20:.1f} MiB"


def format_table(records: list[dict[str, Any]]) -> str:
    """A Markdown table of the scaling records."""
    lines = [
        "| devices | sharding | mesh (data, fsdp, model) | step ms (median) | items/s | "
        "tokens/s | params/device | opt state/device | sharded param arrays |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        tokens = "-" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:.0f}"
        lines.append(
            f"| {r['devices']} | {r['sharding']} | {tuple(r['mesh'])} | {r['step_ms']:.1f} | "
            f"{r['items_per_s']:.1f} | {tokens} | {_size(r['param_bytes_per_device'])} | "
            f"{_size(r['opt_bytes_per_device'])} | "
            f"{r['param_arrays_sharded']}/{r['param_arrays']} |"
        )
    return "\n".join(lines)


def scaling(args: argparse.Namespace) -> int:
    """Run ``scaling-worker`` for each device count; print the table, write the JSON."""
    warmup, steps = (1, 3) if args.quick else (args.warmup, args.steps)
    config = str(Path(args.config).resolve())
    header = (
        f"Scaling report: {args.config} {' '.join(args.overrides)}".rstrip()
        + f"\nplatform {args.platform}; median of {steps} timed steps after {warmup} warm-up"
    )
    if args.platform == "cpu":
        header += (
            f"\nCPU, forced host devices on {os.cpu_count()} cores: every 'device' shares the "
            "same cores, so these\nfigures are correctness-grade only (the sharded step runs, "
            "its memory is split), not real speedups."
        )
    print(header, flush=True)
    records: list[dict[str, Any]] = []
    failed = []
    for devices in [int(d) for d in args.devices.split(",")]:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "scaling-worker",
            "--devices",
            str(devices),
            "--config",
            config,
            "--shardings",
            args.shardings,
            "--warmup",
            str(warmup),
            "--steps",
            str(steps),
            *args.overrides,
        ]
        proc = subprocess.run(
            cmd, env=worker_env(args.platform, devices), capture_output=True, text=True, cwd=REPO
        )
        found = [
            json.loads(line[len(RECORD_PREFIX) :])
            for line in proc.stdout.splitlines()
            if line.startswith(RECORD_PREFIX)
        ]
        records.extend(found)
        if proc.returncode != 0:
            failed.append(devices)
            print(f"{devices} devices failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        for r in found:
            print(f"  {devices} devices, {r['sharding']}: {r['step_ms']:.1f} ms/step", flush=True)
    print()
    print(format_table(records))
    if args.out:
        report = {
            "header": header,
            "config": args.config,
            "overrides": args.overrides,
            "platform": args.platform,
            "host_cpus": os.cpu_count(),
            "warmup": warmup,
            "steps": steps,
            "records": records,
        }
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``tools/bench.py`` command line (one subcommand per benchmark)."""
    parser = argparse.ArgumentParser(prog="tools/bench.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=DEFAULT_CONFIG, help="training config (YAML)")
        p.add_argument("--shardings", default="data,fsdp,fsdp+model")
        p.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation)")
        p.add_argument("--steps", type=int, default=10, help="timed steps")
        p.add_argument("overrides", nargs="*", help="config overrides, key=value")

    p = commands.add_parser("scaling", help="step time and memory for 1..8 devices")
    common(p)
    p.add_argument("--devices", default="1,2,4,8", help="device counts, comma-separated")
    p.add_argument("--platform", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--quick", action="store_true", help="1 warm-up and 3 timed steps")
    p.add_argument("--out", help="also write the records as JSON here")
    p.set_defaults(func=scaling)

    p = commands.add_parser("scaling-worker", help="(internal) one device count of scaling")
    common(p)
    p.add_argument("--devices", type=int, required=True)
    p.set_defaults(func=scaling_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())

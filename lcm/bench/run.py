"""Benchmarks of lcm-jax, one subcommand each.

Run them as ``lcm bench PART ...`` or ``python -m lcm.bench PART ...``.

``all``: the four performance parts below in one run, one report (``--quick``: small sizes,
under two minutes on a 2-core CPU)::

    lcm bench all [--quick] [--out bench.json] [--device cpu|gpu] \\
        [--dtype float32|bfloat16] [--no-torch] [--startup]

``peak``: this machine's dense matmul GFLOP/s in JAX (the reference for model FLOP
utilization), and PyTorch's for comparison.

``train``: concepts/s and model FLOP utilization (MFU) of the trainer's own jitted step
(``trainers.loop.prepare``) for Base-LCM and Two-Tower, timed side by side with the PyTorch
peer of the same model (:mod:`lcm.bench.torch_peer`: same architecture, parameter count, loss
and AdamW step) in the same process: rounds alternate JAX steps, PyTorch steps and a
matmul-peak sample, so all three see the same machine load; warm-up is excluded and medians
are reported. Time-to-first-step (config to first finished step, compilation included) is
reported too. The models are the bench configs shipped beside this module (``configs/``,
named by ``--models``), or any training configs (``--configs``).

``generate``: sentences (concepts)/s and latency per generated sentence of
``lcm.models.generate.generate`` (KV caches; DDIM steps included for Two-Tower) at batch 1 and
batch 32, and time-to-first-generated-sentence (compilation included); the prompt's prefill is
timed alone too, so the batch ratio is also given for the decode loop without it.

``codec``: encode and decode sentences/s of the concept codec: the shipped default codec, a
model directory (``--codec DIR``), or ``--codec random``: randomly initialized weights of the
shipped default codec's architecture and tokenizer (encoding cost does not depend on the
weights), or of the ``model:`` section of a codec training config (``--codec-config``). The
sentences are ``--sentences``, else ``test.txt`` of the codec's prepared data, else the sample
shipped beside this module (``sentences.txt``).

``startup``: time-to-first-step and time-to-first-generated-sentence of a fresh ``lcm``
process, with an empty persistent compilation cache (cold) and again with it filled (warm):
what ``lcm train`` and generation cost before their first result.

``scaling``: step time, throughput and per-device memory of parameters and optimizer state
for 1, 2, 4 and 8 devices under several shardings of the ``('data', 'fsdp', 'model')`` mesh::

    lcm bench scaling [--config CONFIG.yaml] [--quick] [--devices 1,2,4,8] \\
        [--shardings data,fsdp,fsdp+model] [--out scaling.json] [key=value ...]

Each device count runs in its own process (the device count is fixed when JAX starts): on
CPU with ``--xla_force_host_platform_device_count=N``, so the forced devices share the host's
cores and the times check that sharded steps run, not how fast they would be; on GPU with
the first N visible GPUs. The step is the trainer's own (``trainers.loop.prepare``); memory
is read from the state's shardings, so it is exact for any device count. Without
``--config`` the model is :func:`tiny_base_lcm`.

Model FLOPs are counted analytically (:func:`train_flops`: every matmul of the forward pass,
attention scores over all keys as computed, times 3 for forward + backward); XLA's own count
of the compiled step (``cost_analysis``, elementwise work and the optimizer included) is
reported beside it.
"""

from __future__ import annotations

import os

# Set before NumPy and PyTorch load their thread pools (this module's imports come after these
# lines on purpose; under ``lcm bench`` NumPy is already loaded, PyTorch not). Idle OpenMP and
# OpenBLAS threads spin by default: on a busy machine (more runnable threads than cores) that cost
# PyTorch eager 2.5-6x per training step here, and 1.5 s instead of 5 ms for the 256 x 256 QR
# of the synthetic concepts. Passive waiting gives the PyTorch peer its best time under load.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import encoders
from encoders.codec import CONFIG_FILE, DEFAULT_DIR, TOKENIZER_FILE, Codec
from encoders.config import CodecDataConfig, CodecModelConfig
from encoders.model import CodecModel
from encoders.tokenizer import Tokenizer
from lcm.config import apply_overrides, from_dict, read_yaml, to_dict
from lcm.data.concepts import ConceptDataConfig, SyntheticConfig
from lcm.io import write_text_atomic
from lcm.models.base_lcm import BaseLCMConfig
from lcm.models.config import TransformerConfig
from lcm.models.diffusion.ddim import DDIMConfig
from lcm.models.family import concept_dim as data_concept_dim
from lcm.models.generate import compiled_steps, generate
from lcm.models.protocols import SamplingOptions
from lcm.nn import matmul
from trainers.config import TrainConfig, load_train_config, train_config_from_dict
from trainers.launch import with_host_devices
from trainers.loop import prepare
from trainers.mesh import sharding_stats
from trainers.tasks import get_task

HERE = Path(__file__).resolve().parent
RECORD_PREFIX = "BENCH_RECORD "  # marks the worker's result lines among its other output
# The bench configs, shipped with the package (--models names them).
TRAIN_CONFIGS = {
    "base_lcm": HERE / "configs" / "base_lcm_512.yaml",
    "two_tower": HERE / "configs" / "two_tower_512.yaml",
    "base_lcm_1b": HERE / "configs" / "base_lcm_1b.yaml",  # a GPU (--device gpu --dtype bfloat16)
}
# Sentences of the codec part when neither --sentences nor the codec's prepared data has any.
SENTENCES = HERE / "sentences.txt"
# Worker processes: the scaling worker runs this module; the startup worker runs the `lcm`
# command itself, so that it starts (imports, persistent compilation cache) as `lcm train` does.
BENCH_MODULE = [sys.executable, "-m", "lcm.bench"]
LCM_COMMAND = [sys.executable, "-m", "lcm.cli"]

# Goals of the benchmark (issue 7); the report says for each whether it was met.
GOAL_TRAIN_RATIO = 1.3  # JAX / PyTorch-eager training throughput
GOAL_MFU = 0.5  # model FLOP utilization vs the measured matmul peak (d_model=512 configs)
GOAL_GEN_RATIO = 8.0  # batch-32 / batch-1 generated sentences/s
GOAL_ENCODE = 1000.0  # encoded sentences/s with the default codec


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each part does (``--quick`` shrinks everything).

    Attributes:
        train_batch: Rows per training step (None: the config's ``batch_size``).
        train_warmup: Untimed steps per framework after the first.
        train_rounds: Rounds of (JAX steps, PyTorch steps, peak sample).
        steps_per_round: Steps per framework per round.
        peak_size: Side of the square matmul of the peak.
        peak_repeats: Matmuls timed by the ``peak`` part.
        gen_batches: Batch sizes of the generation part.
        gen_concepts: Concepts generated per document.
        gen_prompt: Prompt length (concepts).
        gen_repeats: Timed generations per batch size.
        codec_sentences: Sentences per encode call.
        codec_decode: Vectors per decode call.
        codec_repeats: Timed encode and decode calls.
    """

    train_batch: int | None = None
    train_warmup: int = 2
    train_rounds: int = 5
    steps_per_round: int = 2
    peak_size: int = 2048
    peak_repeats: int = 10
    gen_batches: tuple[int, ...] = (1, 32)
    gen_concepts: int = 32
    gen_prompt: int = 16
    gen_repeats: int = 3
    codec_sentences: int = 4096
    codec_decode: int = 512
    codec_repeats: int = 3


def with_sizes(sizes: Sizes, overrides: Sequence[str]) -> Sizes:
    """``sizes`` with ``FIELD=N`` overrides (``gen_batches=1,8,32`` for a tuple)."""
    changes: dict[str, Any] = {}
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in Sizes.__dataclass_fields__ or not value:
            raise SystemExit(f"--size {item!r}: expected FIELD=N with FIELD one of {FIELDS}")
        ints = tuple(int(v) for v in value.split(","))
        changes[name] = ints if name == "gen_batches" else ints[0]
    return dataclasses.replace(sizes, **changes)


FIELDS = ", ".join(Sizes.__dataclass_fields__)
FULL = Sizes()
QUICK = Sizes(
    train_batch=4,
    train_warmup=0,  # the untimed first steps (time to first step) warm both up
    train_rounds=3,
    steps_per_round=1,
    peak_size=1024,
    peak_repeats=10,
    gen_concepts=4,
    gen_prompt=4,
    gen_repeats=2,
    codec_sentences=256,
    codec_decode=64,
    codec_repeats=2,
)


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


def tiny_base_lcm() -> TrainConfig:
    """The model of ``scaling`` without ``--config``: a Base-LCM of 21.7K parameters (d_model
    32, 2 blocks of 2 heads) on synthetic D=16 concepts, 8 rows of 16 per step. Its sharded
    steps take milliseconds, so every mesh runs in seconds even on forced CPU devices."""
    return TrainConfig(
        family="base_lcm",
        model=BaseLCMConfig(
            d_model=32, decoder=TransformerConfig(num_layers=2, num_heads=2, mlp_dim=64)
        ),
        data=ConceptDataConfig(
            source="synthetic",
            max_seq_len=16,
            synthetic=SyntheticConfig(dim=16, num_docs=256, min_len=4, max_len=24),
        ),
        batch_size=8,
        run_dir="runs/bench_tiny_base_lcm",
    )


def bench_config(config: str | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """The training config ``config`` (YAML) with ``key=value`` overrides, or
    :func:`tiny_base_lcm` with them when ``config`` is None."""
    if config is None:
        return train_config_from_dict(apply_overrides(to_dict(tiny_base_lcm()), overrides))
    return load_train_config(config, overrides)


def time_steps(
    config: str | None, overrides: Sequence[str], warmup: int, steps: int
) -> dict[str, Any]:
    """Time the train step of ``config`` (None: :func:`tiny_base_lcm`) on this process's
    devices.

    The same batch is fed to every step (one compiled shape; step time does not depend on
    the values), and each step is waited for, so its time is the wall time of one step
    (dispatch included, data loading not).

    Returns:
        One record: mesh, step times, throughput and per-device memory.
    """
    cfg = bench_config(config, overrides)
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
    # Absolute, so that the workers read the same file whatever their working directory.
    config = [] if args.config is None else ["--config", str(Path(args.config).resolve())]
    name = args.config or "tiny Base-LCM (built in)"
    header = (
        f"Scaling report: {name} {' '.join(args.overrides)}".rstrip()
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
            *BENCH_MODULE,
            "scaling-worker",
            "--devices",
            str(devices),
            *config,
            "--shardings",
            args.shardings,
            "--warmup",
            str(warmup),
            "--steps",
            str(steps),
            *args.overrides,
        ]
        proc = subprocess.run(
            cmd, env=worker_env(args.platform, devices), capture_output=True, text=True
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
            "config": name,
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


# ------------------------------------------------------------------------------ helpers


def _timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of ``fn()`` (which must block until its work is done)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def host_info(dtype: str) -> dict[str, Any]:
    """The machine and software a report was measured on."""
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "devices": jax.device_count(),
        "host_cpus": os.cpu_count(),
        "cpu": _cpu_name(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "dtype": dtype,
        "versions": {p: _version(p) for p in ("jax", "jaxlib", "flax", "optax", "torch")},
    }


def _torch_peer() -> Any:
    """:mod:`lcm.bench.torch_peer`, imported only here: it needs PyTorch (the ``bench``
    extra)."""
    from lcm.bench import torch_peer  # optional dependency: torch

    return torch_peer


def torch_available() -> bool:
    """Whether PyTorch (the ``bench`` extra) is installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_device(device: str) -> str:
    """The PyTorch device matching ``--device`` (and what JAX runs on for ``auto``)."""
    if device == "gpu" or (device == "auto" and jax.devices()[0].platform == "gpu"):
        return "cuda"
    return "cpu"


def _torch_sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# --------------------------------------------------------------------------------- peak


class PeakProbe:
    """Times square matmuls in JAX: the machine's attainable dense GFLOP/s.

    Args:
        size: Side of the matrices.
        dtype: "float32" or "bfloat16".
    """

    def __init__(self, size: int, dtype: str):
        self.size = size
        key = jax.random.key(0)
        dt = jnp.dtype(dtype)
        self.a = jax.random.normal(key, (size, size), dt)
        self.b = jax.random.normal(jax.random.fold_in(key, 1), (size, size), dt)
        # lcm.nn.matmul: bfloat16 operands take XLA:CPU's fast kernel there (jnp.matmul's
        # bfloat16 -> bfloat16 product runs at the float32 rate on CPU).
        self.f = jax.jit(matmul.matmul)
        jax.block_until_ready(self.f(self.a, self.b))

    def sample(self, repeats: int) -> list[float]:
        """GFLOP/s of ``repeats`` matmuls, one value each."""
        flop = 2.0 * self.size**3
        return [
            flop / _timed(lambda: jax.block_until_ready(self.f(self.a, self.b))) / 1e9
            for _ in range(repeats)
        ]


def torch_peak(size: int, repeats: int, dtype: str, device: str) -> list[float]:
    """GFLOP/s of ``repeats`` square matmuls in PyTorch, one value each."""
    import torch

    dt = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device, dt)
    b = torch.randn(size, size, generator=gen).to(device, dt)
    a @ b
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        _torch_sync(device)
        out.append(2.0 * size**3 / (time.perf_counter() - start) / 1e9)
    return out


def bench_peak(sizes: Sizes, dtype: str, use_torch: bool, device: str) -> dict[str, Any]:
    """The ``peak`` part: median and best matmul GFLOP/s, JAX (and PyTorch)."""
    probe = PeakProbe(sizes.peak_size, dtype)
    jax_g = probe.sample(sizes.peak_repeats)
    record: dict[str, Any] = {
        "size": sizes.peak_size,
        "dtype": dtype,
        "repeats": sizes.peak_repeats,
        "jax_gflops": statistics.median(jax_g),
        "jax_gflops_best": max(jax_g),
        "torch_gflops": None,
        "torch_gflops_best": None,
    }
    if use_torch:
        torch_g = torch_peak(sizes.peak_size, sizes.peak_repeats, dtype, torch_device(device))
        record.update(torch_gflops=statistics.median(torch_g), torch_gflops_best=max(torch_g))
    return record


# -------------------------------------------------------------------------------- train


def train_flops(cfg: TrainConfig, concept_dim: int, batch: int, seq: int) -> float:
    """Model FLOPs of one training step (forward + backward = 3 x forward), counted
    analytically: every matmul of the forward pass at every position (padding included, as
    computed) and the attention scores and weighted sums over all keys (masked ones
    included, as computed). Elementwise work and the optimizer are not model FLOPs.

    Args:
        cfg: A ``base_lcm`` or ``two_tower`` training config.
        concept_dim: D.
        batch: Rows per step.
        seq: Concepts per row.

    Returns:
        FLOPs per step.
    """
    m = cfg.model
    d = m.d_model

    def stack(layers: int, mlp: int, keys: int) -> float:
        """Per position: QKV + output (4 d^2), SwiGLU (3 d mlp), attention (2 x keys x d)."""
        return layers * (2.0 * (4 * d * d + 3 * d * mlp) + 4.0 * keys * d)

    if cfg.family == "base_lcm":
        decoder = m.decoder
        per_position = 2.0 * 2 * concept_dim * d + stack(decoder.num_layers, decoder.mlp_dim, seq)
        forward = batch * seq * per_position
    elif cfg.family == "two_tower":
        den, memory = m.denoiser, seq + 1  # the denoiser also sees a zero vector
        per_position = (
            2.0 * 2 * concept_dim * d  # PreNet, denoiser input projection
            + stack(m.context.num_layers, m.context.mlp_dim, seq)
            + 2.0 * (256 * d + d * d)  # timestep embedding
            + 2.0 * d * concept_dim  # denoiser output projection
            # AdaLN (9 d^2), self value + output, cross query + output (4 d^2), SwiGLU
            + den.num_layers * (2.0 * (13 * d * d + 3 * d * den.mlp_dim) + 4.0 * memory * d)
        )
        forward = batch * (seq * per_position + den.num_layers * memory * 2.0 * 2 * d * d)
    else:
        raise ValueError(f"no FLOP count for task {cfg.family!r} (base_lcm, two_tower)")
    return 3.0 * forward


def _xla_flops(compiled: Any) -> float | None:
    with contextlib.suppress(Exception):
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"])
    return None


def _train_overrides(sizes: Sizes, dtype: str, batch_size: int | None) -> list[str]:
    out = []
    rows = batch_size or sizes.train_batch
    if rows:
        out.append(f"batch_size={rows}")
    if dtype != "float32":
        out.append(f"compute_dtype={dtype}")
    return out


def bench_train(
    config: str,
    overrides: Sequence[str],
    sizes: Sizes,
    probe: PeakProbe,
    *,
    use_torch: bool,
    torch_compile: bool,
    device: str,
) -> dict[str, Any]:
    """One model of the ``train`` part: JAX and PyTorch steps timed side by side.

    The same batch is fed to every step (one compiled shape). Each round times
    ``sizes.steps_per_round`` JAX steps, as many PyTorch steps and three peak matmuls, so
    the three medians come from the same stretch of machine load.

    Returns:
        One record (see the keys below; times in ms, rates per second).
    """
    start = time.perf_counter()
    cfg = load_train_config(config, overrides)
    run = prepare(cfg)
    state = run.layout.init()
    batch = run.batch(0)
    with jax.set_mesh(run.mesh):
        t_compile = time.perf_counter()
        step = run.step.lower(state, batch).compile()
        compile_s = time.perf_counter() - t_compile
        state, metrics = step(state, batch)
        jax.block_until_ready((state, metrics))
        first_step_s = time.perf_counter() - start
        n_params = int(sum(x.size for x in jax.tree.leaves(state["params"])))
        rows, seq, dim = batch["concepts"].shape

        peer = peer_compiled = None
        t_device = torch_device(device)
        if use_torch:
            tp = _torch_peer()
            tp.torch.manual_seed(cfg.seed)
            model = tp.build_model(cfg, dim).to(t_device)
            if tp.num_params(model) != n_params:
                raise AssertionError(
                    f"PyTorch peer has {tp.num_params(model):,} parameters, JAX {n_params:,}"
                )
            t_batch = tp.to_torch(jax.device_get(batch), t_device)
            autocast = cfg.compute_dtype == "bfloat16"
            peer = tp.TrainStep(model, cfg.optim, cfg.steps, autocast=autocast)
            if torch_compile:
                peer_compiled = tp.TrainStep(
                    model, cfg.optim, cfg.steps, autocast=autocast, compile=True
                )

        def jax_step() -> None:
            nonlocal state, metrics
            state, metrics = step(state, batch)
            jax.block_until_ready((state, metrics))

        def torch_step(fn: Any) -> Callable[[], None]:
            def run_it() -> None:
                fn(t_batch)
                _torch_sync(t_device)

            return run_it

        torch_first_s = _timed(torch_step(peer)) if peer else None
        compile_first_s = _timed(torch_step(peer_compiled)) if peer_compiled else None
        for _ in range(sizes.train_warmup):
            jax_step()
            if peer:
                torch_step(peer)()
            if peer_compiled:
                torch_step(peer_compiled)()
        jax_t: list[float] = []
        torch_t: list[float] = []
        compiled_t: list[float] = []
        peak: list[float] = []
        for _ in range(sizes.train_rounds):
            jax_t += [_timed(jax_step) for _ in range(sizes.steps_per_round)]
            if peer:
                torch_t += [_timed(torch_step(peer)) for _ in range(sizes.steps_per_round)]
            if peer_compiled:
                fn = torch_step(peer_compiled)
                compiled_t += [_timed(fn) for _ in range(sizes.steps_per_round)]
            peak += probe.sample(3)

    flops = train_flops(cfg, dim, rows, seq)
    peak_gflops = statistics.median(peak)
    concepts = rows * seq

    def rates(times: list[float]) -> dict[str, float | None]:
        if not times:
            return {"step_ms": None, "concepts_per_s": None, "gflops": None, "mfu": None}
        s = statistics.median(times)
        return {
            "step_ms": 1e3 * s,
            "step_ms_min": 1e3 * min(times),
            "step_ms_max": 1e3 * max(times),
            "concepts_per_s": concepts / s,
            "gflops": flops / s / 1e9,
            "mfu": flops / s / 1e9 / peak_gflops,
        }

    jax_r, torch_r, compiled_r = rates(jax_t), rates(torch_t), rates(compiled_t)
    return {
        "model": cfg.family,
        "config": config,
        "overrides": list(overrides),
        "params": n_params,
        "d_model": cfg.model.d_model,
        "batch_size": rows,
        "seq_len": seq,
        "concept_dim": dim,
        "compute_dtype": cfg.compute_dtype,
        "concepts_per_step": concepts,
        "target_concepts_per_step": float(metrics["tokens"]) if "tokens" in metrics else None,
        "model_gflop_per_step": flops / 1e9,
        "xla_gflop_per_step": None if (x := _xla_flops(step)) is None else x / 1e9,
        "timed_steps": len(jax_t),
        "peak_gflops": peak_gflops,
        "jax": jax_r,
        "torch": torch_r if peer else None,
        "torch_compile": compiled_r if peer_compiled else None,
        "ratio": (statistics.median(torch_t) / statistics.median(jax_t) if torch_t else None),
        "ratio_vs_compile": (
            statistics.median(compiled_t) / statistics.median(jax_t) if compiled_t else None
        ),
        "time_to_first_step_s": first_step_s,
        "compile_s": compile_s,
        "torch_first_step_s": torch_first_s,
        "torch_compile_first_step_s": compile_first_s,
    }


# ----------------------------------------------------------------------------- generate


def concept_dim_of(cfg: TrainConfig) -> int:
    """D of a concept-model config (from the data; no data pass for the synthetic source)."""
    if cfg.data.source == "synthetic":
        return cfg.data.synthetic.dim
    return data_concept_dim(cfg.data)


def init_model(cfg: TrainConfig) -> Any:
    """The model of ``cfg`` with freshly initialized weights (one jitted initialization).

    Throughput does not depend on the weights' values.
    """
    task = get_task(cfg.family)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 0)
    return nnx.jit(lambda: task.build_model(cfg.model, cfg.data, nnx.Rngs(key)))()


def sampling_options(ddim_steps: int | None) -> Any:
    """Default sampling options without guidance, with ``ddim_steps`` DDIM steps if given.

    Guidance (the library's default) runs the denoiser twice per step; the published figures
    time one pass, so the benchmark keeps them comparable across changes of that default.
    """
    steps = {"steps": ddim_steps} if ddim_steps else {}
    return SamplingOptions(ddim=DDIMConfig(guidance_scale=1.0, **steps))


def bench_generate(
    config: str, overrides: Sequence[str], sizes: Sizes, ddim_steps: int | None
) -> dict[str, Any]:
    """One model of the ``generate`` part: ``generate`` at each batch size, rounds alternating
    the batch sizes (so their ratio is measured under the same load); compilation excluded
    from the rates, included in the time to the first sentence (the first call at the first
    batch size less its n - 1 steady-state steps: compilation, prompt, one concept)."""
    cfg = load_train_config(config, overrides)
    dim = concept_dim_of(cfg)
    model = init_model(cfg)
    options = sampling_options(ddim_steps)
    rng = jax.random.key(1)
    n, p = sizes.gen_concepts, sizes.gen_prompt
    prompts = {b: jax.random.normal(jax.random.key(b), (b, p, dim)) for b in sizes.gen_batches}
    # The first call compiles (start and step), encodes the prompt and generates n concepts.
    first_call = {
        b: _timed(lambda b=b: generate(model, prompts[b], n, rng, options))
        for b in sizes.gen_batches
    }
    # The prompt's prefill alone (the same compiled `start` that generate runs first), to
    # split each call into prefill and decode loop.
    graphdef, weights = nnx.split(model)
    start, _ = compiled_steps(graphdef, options, p + n)
    times: dict[int, list[float]] = {b: [] for b in sizes.gen_batches}
    prefill: dict[int, list[float]] = {b: [] for b in sizes.gen_batches}
    for _ in range(sizes.gen_repeats):
        for b in sizes.gen_batches:
            times[b].append(_timed(lambda b=b: generate(model, prompts[b], n, rng, options)))
            prefill[b].append(
                _timed(lambda b=b: jax.block_until_ready(start(weights, prompts[b], None)))
            )
    per_batch = []
    for b in sizes.gen_batches:
        s = statistics.median(times[b])
        s_prefill = statistics.median(prefill[b])
        # At smoke sizes the prefill is most of a call and its median can exceed the call's:
        # the decode loop is then not measurable apart from it.
        loop_s = s - s_prefill if s_prefill < 0.9 * s else None
        per_batch.append(
            {
                "batch": b,
                "seconds": s,
                "sentences_per_s": b * n / s,
                "ms_per_sentence": 1e3 * s / n,  # one step: one sentence for every document
                "prefill_ms": 1e3 * s_prefill,
                "decode_loop_sentences_per_s": None if loop_s is None else b * n / loop_s,
            }
        )
    # A user's wait for a first sentence: the first call less the n - 1 later steps.
    first = sizes.gen_batches[0]
    first_s = first_call[first] - (n - 1) / n * statistics.median(times[first])
    base = per_batch[0]["sentences_per_s"]
    base_loop = per_batch[0]["decode_loop_sentences_per_s"]
    for r in per_batch:
        r["speedup_vs_first_batch"] = r["sentences_per_s"] / base
        loop = r["decode_loop_sentences_per_s"]
        r["decode_loop_speedup_vs_first_batch"] = (
            None if loop is None or base_loop is None else loop / base_loop
        )
    return {
        "model": cfg.family,
        "config": config,
        "params": int(sum(x.size for x in jax.tree.leaves(_params(model)))),
        "ddim_steps": options.ddim.steps if cfg.family in ("two_tower", "one_tower") else None,
        "guidance_scale": options.ddim.guidance_scale,
        "prompt_len": p,
        "concepts_per_document": n,
        "time_to_first_sentence_s": first_s,
        "batches": per_batch,
        "batch_ratio": per_batch[-1]["sentences_per_s"] / base,
        "decode_loop_batch_ratio": per_batch[-1]["decode_loop_speedup_vs_first_batch"],
    }


def _params(model: Any) -> Any:
    return nnx.state(model, nnx.Param)


# -------------------------------------------------------------------------------- codec


def _sentences(path: str | None, data_dir: Path | None, n: int) -> tuple[list[str], str]:
    """``n`` sentences (repeated if the file has fewer) and where they came from."""
    candidates = [Path(path)] if path else []
    if data_dir is not None:
        candidates.append(data_dir / "test.txt")
    candidates.append(SENTENCES)
    for candidate in candidates:
        if candidate.is_file():
            lines = [s.strip() for s in candidate.read_text(encoding="utf-8").splitlines()]
            lines = [s for s in lines if s]
            if lines:
                return [lines[i % len(lines)] for i in range(n)], str(candidate)
    raise FileNotFoundError(f"no sentence file among {[str(c) for c in candidates]}")


def codec_data_dir(codec_config: str | None) -> Path:
    """The prepared codec data of ``codec_config`` (a codec training config), or the codec's
    default data directory (``~/data/codec``) without one."""
    if codec_config is None:
        return Path(CodecDataConfig().data_dir).expanduser()
    return Path(load_train_config(codec_config).data.data_dir).expanduser()


def random_codec(codec_config: str | None, tokenizer: str | None, dtype: str) -> Codec:
    """A randomly initialized codec with a real tokenizer.

    Without ``codec_config``: the shipped default codec's architecture and tokenizer. With it
    (a codec training config): its ``model:`` section and ``<data.data_dir>/tokenizer.model``.
    ``tokenizer`` replaces either tokenizer; the vocabulary size follows the tokenizer.
    """
    if codec_config is None:
        if not (DEFAULT_DIR / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"no default codec in {DEFAULT_DIR}: pass --codec MODEL_DIR, or --codec-config "
                "CONFIG.yaml (a codec training config) for random weights"
            )
        model_cfg = from_dict(CodecModelConfig, read_yaml(DEFAULT_DIR / CONFIG_FILE))
        tok_path = DEFAULT_DIR / TOKENIZER_FILE
    else:
        model_cfg = load_train_config(codec_config).model
        tok_path = codec_data_dir(codec_config) / TOKENIZER_FILE
    tok_path = Path(tokenizer).expanduser() if tokenizer else tok_path
    if not tok_path.is_file():
        raise FileNotFoundError(
            f"no tokenizer at {tok_path}: pass --codec MODEL_DIR or --tokenizer FILE"
        )
    tok = Tokenizer.load(tok_path)
    model_cfg = dataclasses.replace(model_cfg, vocab_size=tok.vocab_size, dtype=dtype)
    model = nnx.jit(lambda: CodecModel(model_cfg, nnx.Rngs(0)))()
    return Codec(model, tok)


# (beam size, rerank) of the timed beam-search decodings of the codec part.
BEAM_DECODINGS = ((8, False), (4, True), (8, True), (16, True))


def bench_codec(
    codec_dir: str | None,
    codec_config: str | None,
    tokenizer: str | None,
    sentences_path: str | None,
    sizes: Sizes,
    dtype: str,
    decode_max_len: int | None,
    probe: PeakProbe,
) -> dict[str, Any]:
    """The ``codec`` part: encode and decode sentences/s (warm: compilation excluded).

    With random weights a decoder rarely emits EOS, so every sentence would run to the cap:
    decoding is capped at the sample's mean token count + 1 (EOS), the length a trained
    codec would produce, unless ``decode_max_len`` says otherwise.

    The encoder's FLOPs per token come from XLA's cost analysis of the jitted encoder; with the
    matmul peak sampled between the encode repeats they give the encoding ceiling: the
    sentences/s of an encoder running at 100% of the peak with no padding.
    """
    if codec_dir == "auto":  # the shipped default codec when there is one
        codec_dir = "default" if (DEFAULT_DIR / CONFIG_FILE).is_file() else "random"
    if codec_dir == "random":
        codec_dir = None
    if codec_dir:
        codec, source = encoders.load(codec_dir), codec_dir
    else:
        codec = random_codec(codec_config, tokenizer, dtype)
        source = f"{codec_config or 'default codec architecture'} (random weights)"
    data_dir = codec_data_dir(codec_config)
    sentences, origin = _sentences(sentences_path, data_dir, sizes.codec_sentences)
    cap = codec.config.max_len - 1
    n_tokens = [min(len(x), cap) + 1 for x in codec.tokenizer.encode(sentences)]  # + EOS
    mean_tokens = float(np.mean(n_tokens))
    exact = codec.encode(sentences)  # compiles every (rows, length) bucket the sample needs
    enc, peak = [], []
    for _ in range(sizes.codec_repeats):
        enc.append(_timed(lambda: codec.encode(sentences)))
        peak += probe.sample(3)
    # The same sentences with the encoder's products in bfloat16 (encode_precision).
    codec.encode_precision = "bfloat16"
    rounded = codec.encode(sentences)
    enc_bf16 = [_timed(lambda: codec.encode(sentences)) for _ in range(sizes.codec_repeats)]
    codec.encode_precision = "float32"
    bf16_error = np.linalg.norm(rounded - exact, axis=1) / np.linalg.norm(exact, axis=1)
    peak_bf16 = statistics.median(PeakProbe(probe.size, "bfloat16").sample(3))
    rows, length = codec.batch_size, int(np.ceil(mean_tokens))
    tokens = np.ones((rows, length), np.int32)
    encoder_flops = _xla_flops(codec._encode.lower(codec._state, tokens).compile())
    flop_per_token = None if encoder_flops is None else encoder_flops / (rows * length)
    vectors = codec.encode(sentences[: sizes.codec_decode])
    if decode_max_len is None and not codec_dir:
        decode_max_len = min(int(np.ceil(mean_tokens)), codec.config.max_len)
    codec.decode(vectors, max_len=decode_max_len)  # compile
    dec = [
        _timed(lambda: codec.decode(vectors, max_len=decode_max_len))
        for _ in range(sizes.codec_repeats)
    ]
    # Beam search, plain and reranked by the beams' encodings (the most faithful), on fewer vectors.
    few = vectors[: max(1, len(vectors) // 8)]
    beams = []
    for beam_size, rerank in BEAM_DECODINGS:
        options = {"beam_size": beam_size, "rerank": rerank, "max_len": decode_max_len}
        codec.decode(few, **options)  # compile
        seconds = statistics.median(
            _timed(lambda options=options: codec.decode(few, **options))
            for _ in range(sizes.codec_repeats)
        )
        beams.append(
            {"beam_size": beam_size, "rerank": rerank, "sentences_per_s": len(few) / seconds}
        )
    n_params = int(sum(x.size for x in jax.tree.leaves(_params(codec.model))))
    enc_s, dec_s = statistics.median(enc), statistics.median(dec)
    enc_bf16_s = statistics.median(enc_bf16)
    peak_gflops = statistics.median(peak)
    sentence_gflop = None if flop_per_token is None else flop_per_token * mean_tokens / 1e9
    ceiling = None if sentence_gflop is None else peak_gflops / sentence_gflop
    ceiling_bf16 = None if sentence_gflop is None else peak_bf16 / sentence_gflop
    return {
        "codec": source,
        "trained": bool(codec_dir),
        "params": n_params,
        "encoder_layers": codec.config.encoder_layers,
        "decoder_layers": codec.config.decoder_layers,
        "d_model": codec.config.d_model,
        "sentences": len(sentences),
        "sentence_source": origin,
        "mean_tokens": mean_tokens,
        "encode_sentences_per_s": len(sentences) / enc_s,
        "encode_tokens_per_s": float(np.sum(n_tokens)) / enc_s,
        "encode_gflop_per_sentence": sentence_gflop,
        "peak_gflops": peak_gflops,
        "encode_ceiling_sentences_per_s": ceiling,
        "encode_mfu": (None if sentence_gflop is None else len(sentences) / enc_s / ceiling),
        "encode_bf16_sentences_per_s": len(sentences) / enc_bf16_s,
        "encode_bf16_relative_error": float(bf16_error.mean()),
        "peak_bf16_gflops": peak_bf16,
        "encode_bf16_ceiling_sentences_per_s": ceiling_bf16,
        "decode_sentences": len(vectors),
        "decode_max_len": decode_max_len or codec.config.max_len,
        "decode_sentences_per_s": len(vectors) / dec_s,
        "decode_beam_sentences": len(few),
        "decode_beam": beams,
        "decode_ms_per_batch_token": (None if not decode_max_len else 1e3 * dec_s / decode_max_len),
    }


# ------------------------------------------------------------------------------ startup


def startup_worker(args: argparse.Namespace) -> int:
    """The first step (``--what train``) or the first generated sentence (``--what
    generate``) of this fresh process; prints the wall-clock time it was done (the parent
    counts from the process launch: interpreter, imports, data, initialization and
    compilation included). :func:`bench_startup` runs it as ``lcm bench startup-worker``, so
    the ``lcm`` command has turned its persistent compilation cache on, as for ``lcm train``."""
    cfg = load_train_config(args.config, args.overrides)
    if args.what == "train":
        run = prepare(cfg)
        state = run.layout.init()
        with jax.set_mesh(run.mesh):
            jax.block_until_ready(run.step(state, run.batch(0)))
    else:
        model = init_model(cfg)
        prompt = jax.random.normal(jax.random.key(0), (1, 4, concept_dim_of(cfg)))
        generate(model, prompt, 1, jax.random.key(1), sampling_options(args.ddim_steps))
    print(RECORD_PREFIX + json.dumps({"done_at": time.time()}), flush=True)
    return 0


def bench_startup(
    configs: Sequence[str], overrides: Sequence[str], ddim_steps: int | None
) -> list[dict[str, Any]]:
    """The ``startup`` part: each worker runs twice in fresh processes sharing one new
    persistent compilation cache: cold (empty cache), then warm (filled by the cold run).
    The workers are ``lcm bench startup-worker`` processes in this working directory."""
    records = []
    with tempfile.TemporaryDirectory(prefix="lcm-bench-xla-") as cache:
        env = {**os.environ, "LCM_COMPILATION_CACHE": cache}
        for config in configs:
            for what in ("train", "generate"):
                times = {}
                for phase in ("cold", "warm"):
                    cmd = [*LCM_COMMAND, "bench", "startup-worker"]
                    cmd += ["--what", what, "--config", config, *overrides]
                    if ddim_steps:
                        cmd += ["--ddim-steps", str(ddim_steps)]
                    started = time.time()  # the worker reports when its result was ready
                    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                    found = [
                        json.loads(line[len(RECORD_PREFIX) :])
                        for line in proc.stdout.splitlines()
                        if line.startswith(RECORD_PREFIX)
                    ]
                    if proc.returncode != 0 or not found:
                        raise RuntimeError(f"startup worker failed:\n{proc.stderr[-3000:]}")
                    times[phase] = found[0]["done_at"] - started
                model = load_train_config(config, overrides).family
                records.append({"what": what, "model": model, "config": config, **times})
                print(
                    f"  startup {what} {model}: cold {times['cold']:.1f} s, "
                    f"warm {times['warm']:.1f} s",
                    flush=True,
                )
    return records


# ------------------------------------------------------------------------------- report


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of the benchmark with its measured value and whether it was met."""
    out = []

    def add(
        goal: str,
        measured: float | None,
        target: float,
        note: str = "",
        ceiling: float | None = None,
    ) -> None:
        if measured is not None:
            out.append(
                {"goal": goal, "target": target, "measured": measured, "met": measured >= target}
                | {"ceiling": ceiling}
                | ({"note": note} if note else {})
            )

    for r in report.get("train") or []:
        # Even a JAX step at 100% of the matmul peak is only 1 / (PyTorch's MFU) times faster.
        torch_mfu = (r["torch"] or {}).get("mfu")
        add(
            f"{r['model']}: training throughput vs PyTorch eager",
            r["ratio"],
            GOAL_TRAIN_RATIO,
            ceiling=None if not torch_mfu else 1.0 / torch_mfu,
        )
        if r["d_model"] == 512:
            add(f"{r['model']}: MFU vs measured matmul peak", r["jax"]["mfu"], GOAL_MFU)
    for r in report.get("generate") or []:
        if len(r["batches"]) > 1:
            add(
                f"{r['model']}: generation batch {r['batches'][-1]['batch']} / batch "
                f"{r['batches'][0]['batch']} sentences/s",
                r["batch_ratio"],
                GOAL_GEN_RATIO,
            )
    codec = report.get("codec")
    if codec:
        add(
            "codec: encode sentences/s",
            codec["encode_sentences_per_s"],
            GOAL_ENCODE,
            "" if codec["trained"] else "random weights (encoding cost does not depend on them)",
            ceiling=codec["encode_ceiling_sentences_per_s"],
        )
        add(
            "codec: encode sentences/s, bfloat16 products (encode_precision)",
            codec["encode_bf16_sentences_per_s"],
            GOAL_ENCODE,
            f"vectors {100 * codec['encode_bf16_relative_error']:.2f}% from float32",
            ceiling=codec["encode_bf16_ceiling_sentences_per_s"],
        )
    return out


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def _times(x: float | None) -> str:
    """A ratio as "7.5x", or "-" when it was not measured."""
    return "-" if x is None else f"{x:.1f}x"


def _count(n: int) -> str:
    """A parameter count: 25.4M, 37.3K."""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def format_report(report: dict[str, Any]) -> str:
    """Markdown tables of a report (the parts it has)."""
    out = []
    peak = report.get("peak")
    if peak:
        out += [
            f"Matmul peak ({peak['size']}x{peak['size']} {peak['dtype']}, median of "
            f"{peak['repeats']}): JAX {_f(peak['jax_gflops'])} GFLOP/s "
            f"(best {_f(peak['jax_gflops_best'])}), PyTorch {_f(peak['torch_gflops'])} "
            f"GFLOP/s (best {_f(peak['torch_gflops_best'])})",
            "",
        ]
    train = report.get("train")
    if train:
        out += [
            "| model | params | batch x T | JAX concepts/s | PyTorch concepts/s | JAX / PyTorch "
            "| JAX GFLOP/s | peak GFLOP/s | JAX MFU | PyTorch MFU | time to first step |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in train:
            t = r["torch"] or {}
            out.append(
                f"| {r['model']} | {_count(r['params'])} | {r['batch_size']} x "
                f"{r['seq_len']} | {_f(r['jax']['concepts_per_s'], '.0f')} | "
                f"{_f(t.get('concepts_per_s'), '.0f')} | {_f(r['ratio'], '.2f')}x | "
                f"{_f(r['jax']['gflops'])} | {_f(r['peak_gflops'])} | "
                f"{_f(100 * r['jax']['mfu'], '.0f')}% | "
                f"{_f(None if t.get('mfu') is None else 100 * t['mfu'], '.0f')}% | "
                f"{r['time_to_first_step_s']:.1f} s |"
            )
        if any(r["torch_compile"] for r in train):
            out += ["", "| model | torch.compile concepts/s | JAX / torch.compile |"]
            out.append("|---|---:|---:|")
            for r in train:
                if r["torch_compile"]:
                    out.append(
                        f"| {r['model']} | {_f(r['torch_compile']['concepts_per_s'], '.0f')} | "
                        f"{_f(r['ratio_vs_compile'], '.2f')}x |"
                    )
        out.append("")
    gen = report.get("generate")
    if gen:
        out += [
            "| model | DDIM steps | batch | sentences/s | ms per sentence | vs batch 1 "
            "| prompt prefill ms | vs batch 1, prefill excluded | time to first sentence |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in gen:
            for i, b in enumerate(r["batches"]):
                first = f"{r['time_to_first_sentence_s']:.1f} s" if i == 0 else ""
                out.append(
                    f"| {r['model']} | {r['ddim_steps'] or '-'} | {b['batch']} | "
                    f"{b['sentences_per_s']:.1f} | {b['ms_per_sentence']:.1f} | "
                    f"{b['speedup_vs_first_batch']:.1f}x | {b['prefill_ms']:.1f} | "
                    f"{_times(b['decode_loop_speedup_vs_first_batch'])} | {first} |"
                )
        out.append("")
    codec = report.get("codec")
    if codec:
        gflop = codec["encode_gflop_per_sentence"]
        mflop = None if gflop is None else 1e3 * gflop
        out += [
            "| codec | params | sentences (mean tokens) | encode sentences/s | encode tokens/s "
            "| encode MFLOP/sentence | encode ceiling (100% of peak) "
            "| encode sentences/s, bfloat16 products (ceiling) "
            "| decode sentences/s (max tokens) | decode sentences/s, beam search |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            f"| {codec['codec']} | {_count(codec['params'])} | {codec['sentences']} "
            f"({codec['mean_tokens']:.1f}) | {codec['encode_sentences_per_s']:.0f} | "
            f"{codec['encode_tokens_per_s']:.0f} | {_f(mflop, '.0f')} "
            f"| {_f(codec['encode_ceiling_sentences_per_s'], '.0f')} | "
            f"{codec['encode_bf16_sentences_per_s']:.0f} "
            f"({_f(codec['encode_bf16_ceiling_sentences_per_s'], '.0f')}) | "
            f"{codec['decode_sentences_per_s']:.0f} ({codec['decode_max_len']}) | "
            + ", ".join(
                f"beam {b['beam_size']}{' + rerank' if b['rerank'] else ''}: "
                f"{b['sentences_per_s']:.1f}"
                for b in codec["decode_beam"]
            )
            + " |",
            "",
        ]
    startup = report.get("startup")
    if startup:
        out += [
            "| first result (fresh process) | model | cold cache | warm cache |",
            "|---|---|---:|---:|",
        ]
        for r in startup:
            what = "training step" if r["what"] == "train" else "generated sentence"
            out.append(f"| {what} | {r['model']} | {r['cold']:.1f} s | {r['warm']:.1f} s |")
        out.append("")
    checks = report.get("goals")
    if checks:
        out += [
            "| goal | target | measured | met | ceiling at 100% of the matmul peak |",
            "|---|---:|---:|---|---:|",
        ]
        for g in checks:
            note = f" ({g['note']})" if "note" in g else ""
            out.append(
                f"| {g['goal']}{note} | {g['target']:g} | {g['measured']:.2f} | "
                f"{'yes' if g['met'] else '**no**'} | {_f(g['ceiling'], '.2f')} |"
            )
        out.append("")
    return "\n".join(out)


def _configs(args: argparse.Namespace) -> list[str]:
    if args.configs:
        return args.configs.split(",")
    return [str(TRAIN_CONFIGS[m]) for m in args.models.split(",")]


def run_perf(args: argparse.Namespace) -> int:
    """``all``, ``peak``, ``train``, ``generate``, ``codec`` and ``startup``: run the parts,
    print the tables and the goals, write the JSON report."""
    parts = (
        ["peak", "train", "generate", "codec"] + (["startup"] if args.startup else [])
        if args.command == "all"
        else [args.command]
    )
    sizes = with_sizes(QUICK if args.quick else FULL, args.size)
    # In-process compilations are always cold (``lcm bench`` turns the CLI's persistent cache
    # on): the time to the first step then never depends on an earlier run. The startup part
    # measures cold and warm starts in fresh processes.
    jax.config.update("jax_enable_compilation_cache", False)
    use_torch = not args.no_torch and torch_available()
    if not args.no_torch and not use_torch and ("train" in parts or "peak" in parts):
        print(
            "PyTorch is not installed (the bench extra: pip install 'lcm-jax[bench]'): JAX only",
            flush=True,
        )
    report: dict[str, Any] = {
        "host": host_info(args.dtype),
        "quick": args.quick,
        "sizes": dataclasses.asdict(sizes),
        "flops": "analytic model FLOPs (lcm.bench.run.train_flops); XLA cost analysis beside",
        "command": " ".join(sys.argv),
    }
    h = report["host"]
    print(
        f"lcm-jax bench: {', '.join(parts)}{' (quick)' if args.quick else ''} on "
        f"{h['platform']} ({h['cpu'] if h['platform'] == 'cpu' else h['device_kind']}, "
        f"{h['host_cpus']} host CPUs), {args.dtype}",
        flush=True,
    )
    configs = _configs(args)
    if "peak" in parts:
        report["peak"] = bench_peak(sizes, args.dtype, use_torch, args.device)
        print(f"  peak: JAX {report['peak']['jax_gflops']:.1f} GFLOP/s", flush=True)
    probe = PeakProbe(sizes.peak_size, args.dtype)
    if "train" in parts:
        overrides = [*_train_overrides(sizes, args.dtype, args.batch_size), *args.overrides]
        report["train"] = []
        for config in configs:
            r = bench_train(
                config,
                overrides,
                sizes,
                probe,
                use_torch=use_torch,
                torch_compile=args.torch_compile,
                device=args.device,
            )
            report["train"].append(r)
            print(
                f"  train {r['model']}: JAX {r['jax']['step_ms']:.0f} ms/step"
                + (f", PyTorch {r['torch']['step_ms']:.0f} ms/step" if r["torch"] else ""),
                flush=True,
            )
    if "generate" in parts:
        report["generate"] = []
        for config in configs:
            r = bench_generate(config, args.overrides, sizes, args.ddim_steps)
            report["generate"].append(r)
            print(f"  generate {r['model']}: batch ratio {r['batch_ratio']:.1f}x", flush=True)
    if "codec" in parts:
        report["codec"] = bench_codec(
            args.codec,
            args.codec_config,
            args.tokenizer,
            args.sentences,
            sizes,
            args.dtype,
            args.decode_max_len,
            probe,
        )
        print(f"  codec: encode {report['codec']['encode_sentences_per_s']:.0f}/s", flush=True)
    if "startup" in parts:
        report["startup"] = bench_startup(configs, args.overrides, args.ddim_steps)
    report["goals"] = goals(report)
    report["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print()
    print(format_report(report))
    if args.out:
        write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


def _set_device(device: str) -> None:
    """Pin JAX to ``--device`` (before any computation)."""
    if device != "auto":
        jax.config.update("jax_platforms", "cuda" if device == "gpu" else "cpu")


def build_parser() -> argparse.ArgumentParser:
    """The ``lcm bench`` command line (one subcommand per benchmark)."""
    parser = argparse.ArgumentParser(prog="lcm bench", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config", help="training config (YAML); default: a tiny Base-LCM (built in)"
        )
        p.add_argument("--shardings", default="data,fsdp,fsdp+model")
        p.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation)")
        p.add_argument("--steps", type=int, default=10, help="timed steps")
        p.add_argument("overrides", nargs="*", help="config overrides, key=value")

    def perf(p: argparse.ArgumentParser) -> None:
        p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
        p.add_argument("--out", help="also write the report as JSON here")
        p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
        p.add_argument(
            "--dtype",
            choices=["float32", "bfloat16"],
            default="float32",
            help="compute dtype of training (JAX compute_dtype, PyTorch autocast), the peak "
            "matmul and a random codec",
        )
        p.add_argument(
            "--models",
            default="base_lcm,two_tower",
            help=f"bench configs by name, comma-separated (from {sorted(TRAIN_CONFIGS)})",
        )
        p.add_argument("--configs", help="training configs instead of --models, comma-separated")
        p.add_argument("--batch-size", type=int, help="rows per training step")
        p.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
        p.add_argument(
            "--torch-compile", action="store_true", help="also time the peer under torch.compile"
        )
        p.add_argument("--ddim-steps", type=int, help="DDIM steps of generation (default 40)")
        p.add_argument(
            "--codec",
            default="auto",
            help="'default' (the shipped codec), a codec model directory, or 'random' (random "
            "weights, architecture of --codec-config); auto: default if shipped, else random",
        )
        p.add_argument(
            "--codec-config",
            help="codec training config (YAML) of a random codec and of its prepared data "
            "(default: the shipped codec's architecture and tokenizer, data in ~/data/codec)",
        )
        p.add_argument("--tokenizer", help="tokenizer of a random codec")
        p.add_argument(
            "--sentences",
            help="text file, one sentence a line (default: test.txt of the codec's prepared "
            "data if there is one, else a shipped sample)",
        )
        p.add_argument("--decode-max-len", type=int, help="tokens per decoded sentence")
        p.add_argument("--startup", action="store_true", help="all: also run the startup part")
        p.add_argument(
            "--size",
            action="append",
            default=[],
            metavar="FIELD=N",
            help="override one of the work sizes (see Sizes), e.g. gen_concepts=64",
        )
        p.add_argument("overrides", nargs="*", help="training config overrides, key=value")
        p.set_defaults(func=run_perf)

    helps = {
        "all": "peak, train, generate and codec in one report (--startup adds startup)",
        "peak": "dense matmul GFLOP/s of this machine (JAX, PyTorch)",
        "train": "training concepts/s and MFU, JAX vs the PyTorch peer",
        "generate": "generated sentences/s at batch 1 and 32",
        "codec": "codec encode and decode sentences/s",
        "startup": "time to first step / first sentence of a fresh process, cold and warm cache",
    }
    for name, text in helps.items():
        perf(commands.add_parser(name, help=text))

    p = commands.add_parser("startup-worker", help="(internal) one fresh-process start")
    p.add_argument("--what", choices=["train", "generate"], required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--ddim-steps", type=int)
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=startup_worker)

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
    if getattr(args, "device", None):
        _set_device(args.device)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())

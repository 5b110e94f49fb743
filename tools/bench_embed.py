"""Sentences/s of ``lcm data embed`` for 1, 2 and 4 processes, or devices (issue 24, part 3)::

    python tools/bench_embed.py [--codec default|DIR] [--input SHARDS | --docs N]
        [--layouts 1x1,1x2,1x4,2x1,4x1] [--precision float32|bfloat16]
        [--batch-sentences 2048] [--docs-per-shard N] [--accelerator] [--out FILE.json]

A layout ``PxD`` is ``P`` processes (``lcm launch``, the runtime of ``lcm train``) of ``D``
devices each. Each layout embeds the input twice with :func:`lcm.data.embed.embed_shards`, as
``lcm data embed`` does: the first run compiles and is not timed; the second is timed from its
start to its end (both runs end with every process together, so the first process's clock is
the job's). Every layout's files are compared with the first layout's, byte for byte
(``same``), and sentences/s with its speed (``vs first``).

On CPU (the default) the ``D`` devices are simulated (``--xla_force_host_platform_device_count``)
and they and the ``P`` processes share the host's cores: the table checks that every layout
runs and writes the same files, not how fast a cluster would be (correctness-grade). With
``--accelerator`` the worker uses the first ``D`` local accelerators (layouts ``1xD`` are real
measurements; ``P > 1`` needs one host or accelerator set per process, as a cluster launcher
gives, and is refused here).

The input is ``--input`` (a shard directory) or the first ``--docs`` documents of the test
fixture corpus (``tests/fixtures/corpus_small.docs.jsonl.gz``, 200 documents). Any speed goal
belongs in this script's table, never in a test's timed assert. This is a separate script while
``tools/bench.py`` moves into an installed module; it is meant to be folded into it as its
``embed`` part.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

import encoders
from lcm.data.embed import embed_shards
from lcm.data.shards import write_documents
from lcm.text.readers import read_documents
from trainers.distributed import ProcessGroup, initialize_from_env

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "corpus_small.docs.jsonl.gz"


def worker(args: argparse.Namespace) -> None:
    """One process of a layout: embed twice (compile, then timed) and report the second run."""
    initialize_from_env()  # before any JAX computation
    group = ProcessGroup.current()
    if args.cache:
        jax.config.update("jax_compilation_cache_dir", args.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    devices = jax.local_devices()[: args.devices]
    codec = encoders.load(args.codec, encode_precision=args.precision, devices=devices)
    options = {
        "batch_sentences": args.batch_sentences,
        "docs_per_shard": args.docs_per_shard,
        "overwrite": True,
        "progress": False,
        "processes": group,
    }
    embed_shards(args.src, Path(args.work) / "warm", codec, **options)
    start = time.perf_counter()
    result = embed_shards(args.src, Path(args.work) / "timed", codec, **options)
    seconds = time.perf_counter() - start
    if group.index == 0:
        report = {
            "processes": group.count,
            "devices_per_process": len(devices),
            "platform": devices[0].platform,
            "documents": result["documents"],
            "sentences": result["sentences"],
            "seconds": seconds,
        }
        Path(args.result).write_text(json.dumps(report) + "\n")


def build_input(docs: int, root: Path) -> Path:
    """Shards of the first ``docs`` fixture documents."""
    out = root / "input"
    picked = list(read_documents(FIXTURE))[:docs]
    write_documents(picked, out, progress=False)
    return out


def run_layout(
    layout: tuple[int, int], args: argparse.Namespace, src: Path, root: Path
) -> dict[str, object]:
    """Run one ``PxD`` layout in fresh processes; its report and output directory."""
    processes, devices = layout
    work = root / f"{processes}x{devices}"
    result = work / "result.json"
    work.mkdir(parents=True)
    command = [
        sys.executable, __file__, "worker", "--src", str(src), "--work", str(work),
        "--result", str(result), "--codec", args.codec, "--devices", str(devices),
        "--precision", args.precision, "--batch-sentences", str(args.batch_sentences),
        "--docs-per-shard", str(args.docs_per_shard), "--cache", str(root / "xla"),
    ]  # fmt: skip
    # The workers import this checkout, whatever is installed.
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    if not args.accelerator:
        env["JAX_PLATFORMS"] = "cpu"
    launch = [sys.executable, "-m", "lcm.cli", "launch", "-n", str(processes)]
    if not args.accelerator:
        launch += ["--devices-per-process", str(devices)]
    proc = subprocess.run(
        [*launch, "--", *command], env=env, cwd=REPO, capture_output=True, text=True
    )
    if proc.returncode != 0 or not result.is_file():
        sys.exit(
            f"layout {processes}x{devices} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return {**json.loads(result.read_text()), "dir": str(work / "timed")}


def same_files(a: Path, b: Path) -> bool:
    """Whether two dataset directories hold the same files, byte for byte."""
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def table(rows: list[dict[str, object]]) -> str:
    """The report as a Markdown table."""
    first = rows[0]
    lines = [
        "| layout | processes | devices/process | platform | sentences | seconds | sentences/s "
        "| vs first | same files |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        rate = r["sentences"] / r["seconds"]
        base = first["sentences"] / first["seconds"]
        lines.append(
            f"| {r['processes']}x{r['devices_per_process']} | {r['processes']} | "
            f"{r['devices_per_process']} | {r['platform']} | {r['sentences']} | "
            f"{r['seconds']:.2f} | {rate:,.0f} | {rate / base:.2f} | "
            f"{'yes' if r['same'] else 'NO'} |"
        )
    return "\n".join(lines)


def parse_layouts(text: str) -> list[tuple[int, int]]:
    """``"1x1,2x1"`` -> ``[(1, 1), (2, 1)]``."""
    layouts = []
    for item in text.split(","):
        p, _, d = item.strip().partition("x")
        if not (p.isdigit() and d.isdigit() and int(p) > 0 and int(d) > 0):
            raise argparse.ArgumentTypeError(f"a layout is PxD (processes x devices), not {item!r}")
        layouts.append((int(p), int(d)))
    return layouts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0])
    sub = parser.add_subparsers(dest="mode")
    w = sub.add_parser("worker", help="(internal) one process of a layout")
    for name in ("--src", "--work", "--result", "--codec", "--precision", "--cache"):
        w.add_argument(name, required=name != "--cache")
    for name in ("--devices", "--batch-sentences", "--docs-per-shard"):
        w.add_argument(name, type=int, required=True)
    parser.add_argument("--codec", default="default", help="'default' or a codec directory")
    parser.add_argument("--input", type=Path, help="a shard directory (default: fixture docs)")
    parser.add_argument("--docs", type=int, default=200, help="fixture documents to embed")
    parser.add_argument(
        "--layouts", type=parse_layouts, default=parse_layouts("1x1,1x2,1x4,2x1,4x1")
    )
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--batch-sentences", type=int, default=2048)
    parser.add_argument("--docs-per-shard", type=int, default=10, help="small: many shards")
    parser.add_argument("--accelerator", action="store_true", help="real devices, not CPU")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.mode == "worker":
        worker(args)
        return 0
    if args.accelerator and any(p > 1 for p, _ in args.layouts):
        parser.error("--accelerator measures 1xD layouts only (one host per process otherwise)")
    with tempfile.TemporaryDirectory(prefix="bench_embed_") as tmp:
        root = Path(tmp)
        src = args.input or build_input(args.docs, root)
        rows = []
        for layout in args.layouts:
            row = run_layout(layout, args, src, root)
            row["same"] = same_files(Path(rows[0]["dir"] if rows else row["dir"]), Path(row["dir"]))
            rows.append(row)
            print(f"{layout[0]}x{layout[1]}: {row['sentences'] / row['seconds']:,.0f} sentences/s",
                  file=sys.stderr)  # fmt: skip
        print(table(rows))
    if args.out:
        args.out.write_text(json.dumps([{k: v for k, v in r.items() if k != "dir"} for r in rows]))
    return 0 if all(r["same"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

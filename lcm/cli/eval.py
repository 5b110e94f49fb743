"""``lcm eval RUN_DIR... [options]``: next-concept metrics of trained LCMs, as one table.

Each run is restored from its newest checkpoint and scored on the held-out split of its own
data config (:mod:`lcm.eval.next_concept`). Prints a Markdown table (one row per run) and
optionally writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import jax

import encoders
from lcm.cli.infer import add_sampling_args, sampling_fields
from lcm.data.concepts import RowTable, build_rows, concept_normalizer, load_concepts
from lcm.eval.next_concept import evaluate_next_concept
from lcm.generate import GenerationConfig
from trainers.checkpoint import CheckpointError
from trainers.state import load_trained_model

_PROG = "lcm eval"


def build_parser() -> argparse.ArgumentParser:
    """The ``lcm eval`` argument parser."""
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Score trained next-concept models (l2, l2-r, CA) on held-out documents.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="training run directories")
    p.add_argument("--split", default="valid", choices=("valid", "train", "all"))
    p.add_argument("--max-rows", type=int, default=256, help="document pieces (rows) to score")
    p.add_argument("--batch-rows", type=int, default=16, help="rows per pass (and CA batch)")
    p.add_argument("--codec", default=None, help="codec for l2-r ('default' or a directory)")
    add_sampling_args(p)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the scores here")
    return p


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lcm eval``; returns the exit code (0 ok, 1 error, 2 usage error)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)

    options = GenerationConfig(**sampling_fields(args)).sampling_options()
    codec = None
    if args.codec is not None:
        codec = encoders.load(args.codec)
    results = []
    for run in args.runs:
        try:
            cfg, model, step = load_trained_model(run)
        except (CheckpointError, FileNotFoundError, ValueError) as e:
            print(f"{_PROG}: {run}: {e}", file=sys.stderr)
            return 1
        data = dataclasses.replace(cfg.data, split=args.split)
        concepts = load_concepts(data)
        table = build_rows(concepts, data.max_seq_len, pack=False, seed=0)
        n = min(args.max_rows, table.num_rows)
        table = RowTable(table.index[:n], table.segment_ids[:n], table.positions[:n])
        scores = evaluate_next_concept(
            model,
            concepts,
            table,
            concept_normalizer(data),
            options=options,
            batch_rows=args.batch_rows,
            rng=jax.random.key(args.seed),
            codec=codec,
        )
        results.append({"run": run, "task": cfg.task, "step": step, **dataclasses.asdict(scores)})
    print("| run | task | step | l2 | l2-r | CA | l2 (copy previous) | positions |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['run']} | {r['task']} | {r['step']} | {_fmt(r['l2'])} | "
            f"{_fmt(r['l2_round_trip'])} | {_fmt(r['contrastive_accuracy'])} | "
            f"{_fmt(r['l2_copy'])} | {r['count']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0

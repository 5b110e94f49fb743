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
from encoders.evaluate import load_heldout
from lcm.cli.infer import add_sampling_args, sampling_fields
from lcm.data.concepts import RowTable, build_rows, concept_normalizer, load_concepts
from lcm.eval.next_concept import evaluate_next_concept
from lcm.eval.rvq import format_table, rvq_round_trip, sample_lines
from lcm.generate import GenerationConfig
from lcm.io import write_text_atomic
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
        results.append(
            {"run": run, "family": cfg.family, "step": step, **dataclasses.asdict(scores)}
        )
    print("| run | family | step | l2 | l2-r | CA | l2 (copy previous) | positions |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['run']} | {r['family']} | {r['step']} | {_fmt(r['l2'])} | "
            f"{_fmt(r['l2_round_trip'])} | {_fmt(r['contrastive_accuracy'])} | "
            f"{_fmt(r['l2_copy'])} | {r['count']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def eval_rvq_main(argv: Sequence[str] | None = None) -> int:
    """``lcm eval-rvq``: decoder round trip of RVQ-quantized concepts per number of codebooks."""
    p = argparse.ArgumentParser(
        prog="lcm eval-rvq",
        description="Fit RVQ codebooks on concepts of training sentences, then decode held-out "
        "sentences quantized with 1..K codebooks and score the text against the original.",
    )
    p.add_argument("--data", required=True, help="prepared codec data (train.txt, test.txt)")
    p.add_argument("--codec", default="default", help='"default" or a codec model directory')
    p.add_argument("--codebooks", type=int, default=8, help="K")
    p.add_argument("--codebook-size", type=int, default=256, help="V")
    p.add_argument("--levels", type=int, nargs="*", help="numbers of codebooks (default 1..K)")
    p.add_argument("--fit-sentences", type=int, default=20000, help="train sentences to fit on")
    p.add_argument("--per-source", type=int, default=15, help="held-out sentences per source")
    p.add_argument("--max-words", type=int, default=30)
    p.add_argument("--split", default="test", choices=("valid", "test"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the rows as JSON here")
    args = p.parse_args(argv)

    data = Path(args.data).expanduser()
    try:
        codec = encoders.load(args.codec)
        fit = sample_lines(data / "train.txt", args.fit_sentences, args.seed)
        test, _ = load_heldout(data, args.split, args.max_words, args.per_source, args.seed)
        rows = rvq_round_trip(
            codec,
            fit,
            test,
            num_codebooks=args.codebooks,
            codebook_size=args.codebook_size,
            levels=args.levels,
            seed=args.seed,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"lcm eval-rvq: {e}", file=sys.stderr)
        return 2
    print(f"{len(test)} held-out sentences, codebooks fitted on {len(fit)} train sentences")
    print(format_table(rows))
    if args.json:
        payload = {
            "codec": args.codec,
            "data": str(data),
            "split": args.split,
            "sentences": len(test),
            "fit_sentences": len(fit),
            "codebook_size": args.codebook_size,
            "rows": [dataclasses.asdict(r) for r in rows],
        }
        write_text_atomic(Path(args.json), json.dumps(payload, indent=1) + "\n")
    return 0

"""Demo: expand short summaries into documents, sentence by sentence, in concept space.

Each summary is split into sentences, encoded into concept vectors, followed by the
"[EXPAND]:" marker concept; the LCM then predicts one concept after another, and each is
decoded into a sentence and printed the moment it exists, with its time.

    python tools/expand_summary.py                      # the built-in summaries
    python tools/expand_summary.py "a tiling window manager for X11" --max-sentences 6
    python tools/expand_summary.py --model OUT_DIR --codec CODEC_DIR "..."
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from lcm.cli.args import add_decoding_args, add_reencode_arg, check_decoding_args, positive_int
from lcm.cli.infer import add_no_repeat_arg, add_sampling_args, sampling_fields
from lcm.models.protocols import EXPAND_SENTENCES

BUILT_IN = (
    "interactive viewer for large log files",
    "command-line tool to synchronize files between computers",
    "library for reading and writing PNG images",
    "fast and simple static website generator",
)


def build_parser() -> argparse.ArgumentParser:
    """The demo's argument parser."""
    parser = argparse.ArgumentParser(
        prog="expand_summary", description="Expand summaries into documents with an LCM."
    )
    parser.add_argument("summaries", nargs="*", help="summaries (default: a few built-in ones)")
    parser.add_argument("--model", default="default", help="LCM model directory or 'default'")
    parser.add_argument("--codec", default=None, help="codec directory (default: the model's)")
    parser.add_argument("--max-sentences", type=positive_int, default=EXPAND_SENTENCES, metavar="N")
    add_sampling_args(parser)
    add_decoding_args(parser)
    add_no_repeat_arg(parser)
    add_reencode_arg(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_decoding_args(parser, args)

    t0 = time.perf_counter()
    from lcm.pipeline import Pipeline

    try:
        pipe = Pipeline.load(
            args.model,
            codec=args.codec,
            beam_size=args.beam_size,
            rerank=args.rerank,
            reencode=args.reencode,
            no_repeat_ngram=args.no_repeat_ngram,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"expand_summary: error: {e}", file=sys.stderr)
        return 1
    print(
        f"loaded {pipe.lcm.config.family} from {pipe.lcm.path} in {time.perf_counter() - t0:.1f}s"
    )
    for summary in args.summaries or BUILT_IN:
        print(f"\n== {summary}")
        start = last = time.perf_counter()
        sentences = 0
        for sentence in pipe.stream("expand", summary, args.max_sentences, **sampling_fields(args)):
            now = time.perf_counter()
            print(f"  [{now - last:5.2f}s] {sentence}")
            last, sentences = now, sentences + 1
        print(f"  ({sentences} sentences in {time.perf_counter() - start:.2f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

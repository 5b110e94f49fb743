"""Argument types and flags shared by the commands of ``lcm`` (no JAX: ``lcm data`` is fast)."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """An argparse ``type``: an int >= 1 (``--limit 0`` would otherwise mean "one item")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _finite_float(text: str, low: float, strict: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < low or (strict and value == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number > 0 (no NaN, no infinity, no negative)."""
    return _finite_float(text, 0.0, strict=True)


def non_negative_float(text: str) -> float:
    """An argparse ``type``: a finite number >= 0."""
    return _finite_float(text, 0.0, strict=False)


def add_decoding_args(parser: argparse.ArgumentParser) -> None:
    """``--beam-size`` and ``--rerank``: how a command decodes vectors (``Codec.decode``)."""
    parser.add_argument(
        "--beam-size", type=int, default=1, help="1: greedy decoding; more: beam search"
    )
    parser.add_argument(
        "--rerank",
        action="store_true",
        help="of the beams, keep the sentence whose own encoding lies nearest to the vector "
        "(needs --beam-size > 1; beam 8-16 with --rerank round-trips best, and is slower)",
    )


def add_reencode_arg(parser: argparse.ArgumentParser) -> None:
    """``--reencode`` / ``--no-reencode``: what a pipeline feeds back (``Pipeline``)."""
    parser.add_argument(
        "--reencode",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="feed back the encoding of each generated sentence instead of the predicted "
        "concept (default: the model family's choice, on for likelihood_lcm)",
    )


def check_decoding_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject bad ``--beam-size`` / ``--rerank`` before anything is loaded (exit status 2)."""
    if args.beam_size < 1:
        parser.error(f"--beam-size must be at least 1, got {args.beam_size}")
    if args.rerank and args.beam_size < 2:
        parser.error("--rerank chooses among beams: add --beam-size 2 or more (8 or 16 are best)")

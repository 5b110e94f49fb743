"""The ``lcm`` command line: one entry point, one subcommand per job.

Each subcommand lives beside the code it drives and is imported only when called, so
``lcm --help`` answers instantly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence

from lcm import __version__

DEBUG_ENV = "LCM_DEBUG"  # set to 1: errors show their traceback (as --debug)
# name -> (one-line help, "module:function" taking argv and returning an exit code).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "data": (
        "build corpora and Parquet sentence shards (see `lcm data -h`)",
        "lcm.cli.data:main",
    ),
    "train": (
        "train any model from a YAML config with key=value overrides",
        "lcm.cli.train:train_main",
    ),
    "export": (
        "write a model directory (what load() opens) from a training run",
        "lcm.cli.train:export_main",
    ),
    "encode": (
        "encode text lines into concept vectors (.npy or Parquet)",
        "lcm.cli.codec:encode_main",
    ),
    "decode": ("decode concept vectors back into sentences", "lcm.cli.codec:decode_main"),
    "eval": (
        "next-concept metrics (l2, l2-r, CA) of trained LCMs",
        "lcm.cli.eval:main",
    ),
    "eval-codec": (
        "round-trip BLEU / exact match of a codec on held-out sentences",
        "lcm.cli.codec:eval_codec_main",
    ),
    "eval-rvq": (
        "decoder round trip of RVQ-quantized concepts per number of codebooks (Quant-LCM)",
        "lcm.cli.eval:eval_rvq_main",
    ),
    "eval-task": (
        "summarization/expansion evaluation (ROUGE, OVL-3, REP-4) with baselines",
        "lcm.cli.infer:eval_task_main",
    ),
    "summarize": (
        "summarize a document in embedding space",
        "lcm.cli.infer:summarize_main",
    ),
    "expand": ("expand a summary into a document", "lcm.cli.infer:expand_main"),
    "generate": (
        "continue a document sentence by sentence",
        "lcm.cli.infer:generate_main",
    ),
    "launch": (
        "run a command as N local JAX processes (multi-host test)",
        "trainers.launch:main",
    ),
    "plot": ("draw loss and evaluation curves of a run", "lcm.plot:main"),
    "convert-sonar": (
        "convert SONAR text encoder/decoder checkpoints into a model directory",
        "encoders.sonar.convert:main",
    ),
    "bench": (
        "benchmarks: train (JAX vs PyTorch, MFU), generate, codec, peak, startup",
        "lcm.cli.bench:bench_main",
    ),
}


def _resolve(name: str) -> Callable[[Sequence[str]], int]:
    module_name, func = SUBCOMMANDS[name][1].split(":")
    return getattr(importlib.import_module(module_name), func)


# Subcommands that never compile anything; the others share a persistent compilation cache.
_NO_JAX = {"data", "launch"}


def enable_compilation_cache() -> None:
    """Keep compiled XLA programs on disk so a restart or a second run skips compilation.

    The directory is ``$LCM_COMPILATION_CACHE`` (default ``~/.cache/lcm-jax/xla``); set it
    to an empty string to switch the cache off.
    """
    import os

    path = os.environ.get("LCM_COMPILATION_CACHE", os.path.expanduser("~/.cache/lcm-jax/xla"))
    if not path:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    # Every program, sub-second ones included: a command compiles a dozen small ones (codec
    # buckets, generation steps), and caching only those over 1 s (JAX's default) left
    # `lcm expand` at 4.5 s with a warm cache instead of 2.9 s. Entries are small (kilobytes).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def build_parser() -> argparse.ArgumentParser:
    """Top-level parser; subcommands parse their own arguments."""
    parser = argparse.ArgumentParser(
        prog="lcm",
        description="lcm-jax: Large Concept Models in JAX.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `lcm <command> -h` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"lcm-jax {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of an error instead of one line (or set {DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (help_text, _) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lcm`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Split at the subcommand so its own options are not parsed here.
    idx = next((i for i, a in enumerate(argv) if a in SUBCOMMANDS), None)
    head, rest = (argv, []) if idx is None else (argv[: idx + 1], argv[idx + 1 :])
    args = parser.parse_args(head)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # orbax logs every save step at INFO through absl; keep the console readable.
        logging.getLogger("absl").setLevel(logging.WARNING)
        logging.getLogger("jax").setLevel(logging.WARNING)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command not in _NO_JAX:
        enable_compilation_cache()
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if not debug:
        # A worker thread's failure (orbax's asynchronous writes) reaches the command as an
        # exception of its own; the tracebacks that its libraries log on the way would bury
        # the one line below.
        threading.excepthook = _log_thread_error
        for name in ("absl", "asyncio", "concurrent.futures"):
            logging.getLogger(name).addFilter(_without_tracebacks)
    try:
        return int(_resolve(args.command)(rest) or 0)
    except KeyboardInterrupt:
        print(f"lcm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the last line of defence: one line, unless debugging
        if debug:
            raise
        print(f"lcm {args.command}: {describe_error(e)} (--debug shows where)", file=sys.stderr)
        return 1


def _without_tracebacks(record: logging.LogRecord) -> bool:
    """A logging filter: drop library records that carry a traceback (the error they log is
    raised to the command, which reports it in one line)."""
    return record.exc_info is None and record.levelno < logging.ERROR


def _log_thread_error(args: threading.ExceptHookArgs) -> None:
    logging.getLogger("lcm").debug(
        "thread %s failed: %s", getattr(args.thread, "name", "?"), args.exc_value
    )


def describe_error(error: BaseException) -> str:
    """One line that names the problem: the OS's words and the file for an ``OSError``, the
    first line of the message otherwise (XLA's errors run to pages)."""
    if isinstance(error, OSError) and error.strerror:
        names = [n for n in (error.filename, error.filename2) if n is not None]
        where = " -> ".join(map(str, names))
        return f"{error.strerror}: {where}" if where else error.strerror
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__

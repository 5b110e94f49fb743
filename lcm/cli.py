"""The ``lcm`` command line: one entry point, one subcommand per job.

Each subcommand lives beside the code it drives and is imported only when called, so
``lcm --help`` answers instantly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence

DEBUG_ENV = "LCM_DEBUG"  # set to 1: errors show their traceback (as --debug)
# name -> (one-line help, "module:function" taking argv and returning an exit code).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "data": (
        "build corpora and Parquet sentence shards (see `lcm data -h`)",
        "lcm.data.cli:main",
    ),
    "train": (
        "train any model from a YAML config with key=value overrides",
        "lcm.cli:train_main",
    ),
    "export": (
        "write a model directory (what load() opens) from a training run",
        "lcm.cli:export_main",
    ),
    "encode": (
        "encode text lines into concept vectors (.npy or Parquet)",
        "encoders.cli:encode_main",
    ),
    "decode": ("decode concept vectors back into sentences", "encoders.cli:decode_main"),
    "eval": (
        "next-concept metrics (l2, l2-r, CA) of trained LCMs",
        "lcm.eval.cli:main",
    ),
    "eval-codec": (
        "round-trip BLEU / exact match of a codec on held-out sentences",
        "encoders.evaluate:main",
    ),
    "eval-rvq": (
        "decoder round trip of RVQ-quantized concepts per number of codebooks (Quant-LCM)",
        "lcm.eval.rvq:main",
    ),
    "eval-task": (
        "summarization/expansion evaluation (ROUGE, OVL-3, REP-4) with baselines",
        "lcm.infer_cli:eval_task_main",
    ),
    "summarize": (
        "summarize a document in embedding space",
        "lcm.infer_cli:summarize_main",
    ),
    "expand": ("expand a summary into a document", "lcm.infer_cli:expand_main"),
    "generate": (
        "continue a document sentence by sentence",
        "lcm.infer_cli:generate_main",
    ),
    "launch": (
        "run a command as N local JAX processes (multi-host test)",
        "trainers.launch:main",
    ),
    "plot": ("draw loss and evaluation curves of a run", "lcm.plot:main"),
    "convert-sonar": (
        "convert SONAR text encoder/decoder checkpoints into a model directory",
        "encoders.sonar_convert:main",
    ),
    "bench": (
        "benchmarks: train (JAX vs PyTorch, MFU), generate, codec, peak, startup",
        "lcm.cli:bench_main",
    ),
}


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


def _resolve(name: str) -> Callable[[Sequence[str]], int]:
    module_name, func = SUBCOMMANDS[name][1].split(":")
    return getattr(importlib.import_module(module_name), func)


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

    from lcm.config import ConfigError
    from lcm.data.readers import DataError
    from trainers.config import load_train_config
    from trainers.distributed import initialize_from_env

    initialize_from_env()  # before any JAX computation; a no-op for single-process runs
    from trainers.loop import NonFiniteLossError, TrainingInterrupted, train
    from trainers.run_dir import RunLockedError

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
    print(f"finished {cfg.task} at step {result.step} in {result.run_dir}: {summary}")
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

    from trainers.checkpoint import CheckpointError
    from trainers.state import load_trained_model
    from trainers.tasks import get_task

    try:
        cfg, model, step = load_trained_model(args.run_dir)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"lcm export: {e}", file=sys.stderr)
        return 2
    task = get_task(cfg.task)
    if task.export is None:
        print(f"lcm export: task {cfg.task!r} has no model-directory format", file=sys.stderr)
        return 2
    task.export(model, cfg.model, cfg.data, args.out_dir)
    print(f"exported {cfg.task} step {step} from {args.run_dir} to {args.out_dir}")
    return 0


def bench_main(argv: Sequence[str]) -> int:
    """``lcm bench PART ...``: ``tools/bench.py`` of this source checkout (see its ``-h``)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "bench.py"
    if not path.is_file():
        print(
            f"lcm bench: {path} not found; the benchmarks run from a source checkout "
            "(git clone, then pip install -e '.[bench]')",
            file=sys.stderr,
        )
        return 2
    spec = importlib.util.spec_from_file_location("lcm_tools_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return int(module.main(list(argv)) or 0)


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
    from lcm import __version__

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


if __name__ == "__main__":
    sys.exit(main())

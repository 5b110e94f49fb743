"""``lcm data <sub>``: corpus building, sentence segmentation and Parquet shards.

Subcommands:

* ``shards INPUT... --out DIR``: read -> segment -> Parquet shards, with skip counts at the end.
* ``segment [FILE|-]``: print one sentence per line.
* ``build-corpus ...``: rebuild the shared corpus from Debian (``lcm.data.build_corpus``).
* ``embed SHARDS --codec NAME_OR_DIR --out DIR``: fill the ``embeddings`` column with a codec
  and write the end-of-text concept as ``DIR/eot.npy``, on every local device and, under
  ``lcm launch``, in every process (``lcm.cli.embed``, loaded only when it runs).
* ``fit-normalizer SHARDS --out normalizer.npz``: fit the concept normalizer on a sample.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import logging
import os
import sys
from collections.abc import Iterator

from lcm.cli.args import positive_int
from lcm.data.build_corpus import build as build_corpus
from lcm.data.embed import read_space, sample_embeddings
from lcm.data.normalizer import Normalizer
from lcm.data.shards import write_documents
from lcm.data.tasks import build_task_shards
from lcm.text.heldout import HELDOUT_SOURCES
from lcm.text.readers import (
    FORMATS,
    DataError,
    Document,
    ReadStats,
    iter_documents,
    read_documents,
)
from lcm.text.segment import segment_document, split_paragraphs

# `embed` needs JAX and the codec: its module is loaded by name when it runs (as `lcm` loads
# its commands), so that the other data commands run without them.
_EMBED = "lcm.cli.embed"

__all__ = ["build_parser", "main"]

_PROG = "lcm data"


def build_parser() -> argparse.ArgumentParser:
    """The ``lcm data`` argument parser."""

    parser = argparse.ArgumentParser(
        prog=_PROG, description="Data pipeline: corpora, sentence segmentation, Parquet shards."
    )
    sub = parser.add_subparsers(dest="sub", metavar="<subcommand>")

    p = sub.add_parser(
        "shards",
        help="segment documents into sentences and write Parquet shards",
        description="Read documents (text, JSONL, pairs; .gz ok; globs and directories ok), "
        "split them into sentences of at most --max-chars characters and write "
        "DIR/shard-NNNNN.parquet plus DIR/manifest.json.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, globs or directories")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--format", default="auto", choices=FORMATS, help="input format")
    p.add_argument("--max-chars", type=positive_int, default=256, help="sentence length cap")
    p.add_argument("--docs-per-shard", type=positive_int, default=10_000, metavar="N")
    p.add_argument("--row-group-size", type=positive_int, default=1_000, metavar="N")
    p.add_argument("--prefix", default="shard", help="shard file name prefix")
    p.add_argument("--split", default=None, help="keep only records of this split (pairs)")
    p.add_argument(
        "--strict", action="store_true", help="stop at the first bad record (default: skip+count)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace shards already in DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "segment",
        help="print one sentence per line",
        description="Split text into sentences, one per line. A text file or stdin is one "
        "document; JSONL/pairs files print one block per document, separated by blank lines.",
    )
    p.add_argument("file", nargs="?", default="-", metavar="FILE", help="input file, - = stdin")
    p.add_argument("--max-chars", type=positive_int, default=256, help="sentence length cap")
    p.add_argument("--format", default="auto", choices=FORMATS, help="input format (files)")

    sub.add_parser("build-corpus", help="rebuild the English corpus and pairs from Debian")

    p = sub.add_parser(
        "build-tasks",
        help="write summarization/expansion fine-tuning documents from a pairs file",
        description="For each pair of --split write 'input sentences, task marker, target "
        "sentences' documents (one per task) to DIR; the input and marker are marked as "
        "context so the LCM loss covers the targets only. Fill the embeddings afterwards "
        "with `lcm data embed`.",
    )
    p.add_argument("pairs", metavar="PAIRS", help="pairs JSONL file (.gz ok)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--tasks", default="summarize,expand", help="comma-separated tasks (default: %(default)s)"
    )
    p.add_argument("--split", default="train", help="pairs split to read (default: train)")
    p.add_argument(
        "--max-concepts",
        type=positive_int,
        default=128,
        metavar="T",
        help="context length of the model (the end-of-text concept included)",
    )
    p.add_argument("--max-chars", type=positive_int, default=256, help="sentence length cap")
    p.add_argument(
        "--plain", action="store_true", help="also write each document as an ordinary document"
    )
    p.add_argument("--overwrite", action="store_true", help="replace shards already in DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "embed",
        help="fill the embeddings column of shards with a codec",
        description="Encode the sentences of every document of SHARDS with a codec and write "
        "the same documents with their embeddings to DIR, plus DIR/eot.npy (the encoding of "
        "'End of text.', appended to every document when training an LCM). Uses every local "
        "device; under `lcm launch -n P` (or LCM_DISTRIBUTED=1 on a cluster) process i "
        "writes output shards i, i+P, i+2P, ..., the same files as one process.",
    )
    p.add_argument("shards", metavar="SHARDS", help="input shard directory or file")
    p.add_argument(
        "--codec", default="default", help="'default' (shipped codec) or a codec model directory"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--batch-sentences",
        type=positive_int,
        default=2048,
        metavar="N",
        help="sentences per codec call (several documents together)",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="the encoder's matrix products in float32, or bfloat16 (faster on CPUs with "
        "avx512_bf16; vectors within about 0.3%%)",
    )
    p.add_argument("--docs-per-shard", type=positive_int, default=10_000, metavar="N")
    p.add_argument("--overwrite", action="store_true", help="replace shards already in DIR")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run into DIR: keep its complete shards, encode the rest "
        "(any number of processes)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "fit-normalizer",
        help="fit the concept normalizer on embedded shards",
        description="Fit a per-dimension normalizer on a uniform sample of the embeddings of "
        "SHARDS and save it as an .npz (the data.normalizer of an LCM config).",
    )
    p.add_argument("shards", metavar="SHARDS", help="embedded shard directory or file")
    p.add_argument(
        "--method", default="gaussian_robust", choices=("standard", "robust", "gaussian_robust")
    )
    p.add_argument("--clip", type=float, default=None, help="clip normalized values to +-CLIP")
    p.add_argument(
        "--max-vectors", type=positive_int, default=1_000_000, metavar="N", help="sample size"
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--out", required=True, metavar="FILE", help="output .npz")
    return parser


def _setup_logging() -> None:
    """Make reader warnings (skipped records, file:line) visible when run standalone."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _noting_heldout(docs: Iterator[Document], found: set[str]) -> Iterator[Document]:
    """Pass ``docs`` through, adding the held-out sources among them to ``found``."""
    for doc in docs:
        if doc.source in HELDOUT_SOURCES:
            found.add(doc.source)
        yield doc


def _cmd_shards(args: argparse.Namespace) -> int:

    stats = ReadStats()
    heldout: set[str] = set()
    try:
        docs = iter_documents(
            args.inputs,
            args.format,
            stats=stats,
            split=args.split,
            on_error="raise" if args.strict else "skip",
        )
        result = write_documents(
            _noting_heldout(docs, heldout),
            args.out,
            max_chars=args.max_chars,
            docs_per_shard=args.docs_per_shard,
            progress=not args.no_progress,
            prefix=args.prefix,
            row_group_size=args.row_group_size,
            overwrite=args.overwrite,
        )
    except FileExistsError as e:
        print(f"{_PROG} shards: error: {e} (--overwrite on the command line)", file=sys.stderr)
        return 1
    except (DataError, ValueError) as e:
        print(f"{_PROG} shards: error: {e}", file=sys.stderr)
        if stats.files:
            print(f"{_PROG} shards: before the error: {stats.summary()}", file=sys.stderr)
        return 1
    print(stats.summary())
    print(
        f"wrote {result['documents_written']} documents, {result['sentences']} sentences "
        f"(max {result['sentence_chars_max']} chars) to {len(result['shards'])} shard(s) in "
        f"{args.out}; {result['skipped_no_sentences']} document(s) without sentences skipped"
    )
    if heldout:
        # Shards do not know what they will be used for, so warn rather than refuse: these
        # shards are right for evaluation and wrong for training.
        print(
            f"{_PROG} shards: warning: {args.out} holds the held-out test source(s) "
            f"{', '.join(sorted(heldout))} (lcm.text.heldout): evaluate on them, never train "
            "on them",
            file=sys.stderr,
        )
    problems = stats.skipped + stats.empty_files + stats.read_errors
    if problems:
        # Skips must never go unnoticed, even when stdout is redirected.
        print(
            f"{_PROG} shards: warning: {stats.skipped} bad record(s) skipped, "
            f"{stats.empty_files} empty file(s), {stats.read_errors} unreadable file(s) "
            "(see the log above; --strict stops at the first one)",
            file=sys.stderr,
        )
    if result["documents_written"] == 0:
        print(f"{_PROG} shards: error: no documents written", file=sys.stderr)
        return 1
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:

    out = sys.stdout
    try:
        if args.file == "-":
            raw = sys.stdin.buffer.read()
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as e:
                raise DataError(f"<stdin>: invalid UTF-8 at byte {e.start}") from None
            for sent in segment_document(split_paragraphs(text), args.max_chars):
                out.write(sent + "\n")
            return 0
        stats = ReadStats()
        for i, doc in enumerate(read_documents(args.file, args.format, stats=stats)):
            if i:
                out.write("\n")
            for sent in segment_document(doc.paragraphs, args.max_chars):
                out.write(sent + "\n")
        if not stats.documents:
            raise DataError(f"{args.file}: no document read ({stats.summary()})")
        if stats.skipped or stats.empty_files or stats.read_errors:
            print(f"{_PROG} segment: {stats.summary()}", file=sys.stderr)
        return 0
    except DataError as e:
        print(f"{_PROG} segment: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `lcm data segment book.txt | head`: stop quietly; silence the flush at exit too.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0


def _cmd_build_tasks(args: argparse.Namespace) -> int:

    try:
        counts = build_task_shards(
            args.pairs,
            args.out,
            tasks=[t for t in args.tasks.split(",") if t],
            split=args.split,
            max_concepts=args.max_concepts,
            max_chars=args.max_chars,
            plain=args.plain,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except FileExistsError as e:
        print(f"{_PROG} build-tasks: error: {e} (--overwrite on the command line)", file=sys.stderr)
        return 1
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"{_PROG} build-tasks: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    return int(importlib.import_module(_EMBED).embed_main(args))


def _cmd_fit_normalizer(args: argparse.Namespace) -> int:

    try:
        sample = sample_embeddings(args.shards, args.max_vectors, args.seed)
        space = read_space(args.shards) or {}
        normalizer = dataclasses.replace(
            Normalizer.fit(sample, method=args.method, clip=args.clip), codec=space.get("codec")
        )
    except (DataError, ValueError) as e:
        print(f"{_PROG} fit-normalizer: error: {e}", file=sys.stderr)
        return 1
    normalizer.save(args.out)
    print(
        f"fitted a {args.method} normalizer (D={normalizer.dim}) on {len(sample)} vectors; "
        f"wrote {args.out}"
    )
    return 0


def _cmd_build_corpus(argv: list[str]) -> int:
    return int(build_corpus.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    """Run ``lcm data``.

    Args:
        argv: Arguments after ``lcm data`` (default: ``sys.argv[1:]``).

    Returns:
        Process exit code: 0 ok, 1 data error, 2 usage error / not implemented.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # build-corpus takes its arguments verbatim (it has its own parser).
    if argv[:1] == ["build-corpus"]:
        return _cmd_build_corpus(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits on -h (0) and on usage errors (2)
        return int(e.code or 0)
    _setup_logging()
    if args.sub == "shards":
        return _cmd_shards(args)
    if args.sub == "segment":
        return _cmd_segment(args)
    if args.sub == "build-tasks":
        return _cmd_build_tasks(args)
    if args.sub == "embed":
        return _cmd_embed(args)
    if args.sub == "fit-normalizer":
        return _cmd_fit_normalizer(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``lcm data embed``: encode the sentences of shards with a codec, on every local device and,
under ``lcm launch`` or ``LCM_DISTRIBUTED`` (:mod:`trainers.distributed`), in every process.

Its own module, loaded by ``lcm data`` only when ``embed`` runs: the other data commands
(``shards``, ``segment``, ``build-tasks``, ``build-corpus``) import neither JAX nor the codec.
"""

from __future__ import annotations

import argparse
import sys

import jax

import encoders
from lcm.cli import enable_compilation_cache
from lcm.data.embed import SentenceEncoder, embed_shards
from lcm.text.readers import DataError
from trainers.distributed import ProcessGroup, initialize_from_env

PROG = "lcm data embed"


def _load_codec(name: str, precision: str = "float32") -> SentenceEncoder:
    """The codec ``name``, encoding on all of this process's devices."""
    return encoders.load(name, encode_precision=precision, devices=jax.local_devices())


def embed_main(args: argparse.Namespace) -> int:
    """Run ``lcm data embed`` with the arguments parsed by ``lcm data``'s parser.

    Returns:
        0, or 1 after one error line on stderr (in every process of a multi-process job).
    """
    try:
        initialize_from_env()  # before any JAX computation; a no-op for a single process
        group = ProcessGroup.current()
        # An embedding job compiles a program per length bucket: a resumed or repeated run
        # (and each process of a job, through a shared directory) reuses them.
        enable_compilation_cache()
        codec = _load_codec(args.codec, args.precision)
        result = embed_shards(
            args.shards,
            args.out,
            codec,
            batch_sentences=args.batch_sentences,
            docs_per_shard=args.docs_per_shard,
            overwrite=args.overwrite,
            resume=args.resume,
            progress=not args.no_progress,
            processes=group,
        )
    except FileExistsError as e:
        print(f"{PROG}: error: {e} (--overwrite or --resume on the command line)", file=sys.stderr)
        return 1
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    if group.index == 0:
        workers = f" by {group.count} processes" if group.count > 1 else ""
        print(
            f"embedded {result['documents']} documents, {result['sentences']} sentences "
            f"(D={result['dim']}) into {len(result['shards'])} shard(s) in {args.out}{workers}; "
            f"end-of-text concept: {result['eot']}"
        )
    return 0

"""``lcm summarize``, ``lcm expand``, ``lcm generate`` and ``lcm eval-task``.

Text input rules: FILE is read as UTF-8 (``-`` = stdin); bytes that are not UTF-8 are an
error naming the file and the byte offset, never silently replaced.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import encoders
from encoders.evaluate import decoding_name
from lcm.cli.args import (
    add_decoding_args,
    add_reencode_arg,
    check_decoding_args,
    non_negative_float,
    positive_float,
    positive_int,
)
from lcm.eval import tasks as T
from lcm.generate import GenerationConfig
from lcm.io import write_text_atomic
from lcm.models.protocols import MAX_SENTENCES
from lcm.models.token_lm import TokenLMPipeline, is_token_lm, load_token_lm
from lcm.pipeline import NO_REPEAT_NGRAM, Pipeline
from lcm.text.segment import text_sentences

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """How the sampled families draw each concept: one flag per knob, for every command that
    generates (``lcm summarize/expand/generate/eval-task``, ``lcm eval``, the demo), with the
    defaults of :class:`GenerationConfig` (hence of ``DDIMConfig``)."""
    g = GenerationConfig
    # flags (the first is the name; older spellings follow), type, metavar, help
    knobs: list[tuple[tuple[str, ...], Any, str, str]] = [
        (("--seed",), int, "N", "randomness of the sampled families"),
        (("--steps", "--ddim-steps"), positive_int, "N", "diffusion denoising steps"),
        (
            ("--guidance-scale", "--guidance"),
            float,
            "W",
            "classifier-free guidance weight of the diffusion families, 1 = none",
        ),
        (("--guidance-rescale",), non_negative_float, "F", "guidance rescale factor, 0 = off"),
        (("--initial-noise-scale",), positive_float, "STD", "std of the starting noise"),
        (("--epsilon-scaling",), positive_float, "F", "divide predicted noise by F, 1 = off"),
        (("--eta",), non_negative_float, "ETA", "DDIM eta: 0 deterministic, 1 DDPM-like"),
        (("--temperature",), non_negative_float, "T", "Quant-LCM unit sampling, 0 = greedy"),
    ]
    for flags, kind, metavar, text in knobs:
        dest = flags[0][2:].replace("-", "_")
        default = getattr(g, dest)
        p.add_argument(
            *flags,
            dest=dest,
            type=kind,
            default=default,
            metavar=metavar,
            help=f"{text} (default {default})",
        )


SAMPLING_FIELDS = (
    "seed",
    "steps",
    "guidance_scale",
    "guidance_rescale",
    "initial_noise_scale",
    "epsilon_scaling",
    "eta",
    "temperature",
)


def sampling_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`GenerationConfig` fields that :func:`add_sampling_args` set."""
    return {name: getattr(args, name) for name in SAMPLING_FIELDS}


def _add_model_args(p: argparse.ArgumentParser, max_sentences: int | None) -> None:
    g = GenerationConfig
    p.add_argument(
        "--model", default="default", help="'default' (shipped) or an LCM model directory"
    )
    p.add_argument(
        "--codec", default=None, help="codec directory (default: the model's own, or shipped)"
    )
    p.add_argument(
        "--max-sentences",
        type=positive_int,
        default=max_sentences,
        metavar="N",
        help="most sentences to write (default "
        + (f"{max_sentences})" if max_sentences else "4 to summarize, 12 to expand)"),
    )
    add_sampling_args(p)
    p.add_argument(
        "--stop-threshold",
        type=float,
        metavar="COS",
        default=g.stop_threshold,
        help=f"cosine to end of text that stops (default {g.stop_threshold})",
    )
    p.add_argument(
        "--repetition-threshold",
        type=float,
        metavar="COS",
        default=g.repetition_threshold,
        help="stop when a concept repeats the previous one this closely "
        f"(cosine; default {g.repetition_threshold})",
    )
    p.add_argument("--no-repetition-stop", action="store_true", help="never stop on a repetition")
    add_decoding_args(p)
    add_no_repeat_arg(p)
    add_reencode_arg(p)


def add_no_repeat_arg(p: argparse.ArgumentParser) -> None:
    """``--no-repeat-ngram N``: the pipeline's n-gram blocking (``Pipeline(no_repeat_ngram)``)."""
    p.add_argument(
        "--no-repeat-ngram",
        type=_ngram_order,
        default=None,
        metavar="N",
        help="decode no sentence with a token N-gram of the sentences generated before it "
        f"(0: off; default {NO_REPEAT_NGRAM} where the codec supports it)",
    )


def _ngram_order(text: str) -> int:
    """An argparse ``type``: 0 or an int >= 2."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 0 or n == 1:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or at least 2, got {n}")
    return n


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        **sampling_fields(args),
        "stop_threshold": args.stop_threshold,
        "repetition_threshold": None if args.no_repetition_stop else args.repetition_threshold,
    }


def _pipeline(args: argparse.Namespace) -> Any:

    if args.model != "default" and is_token_lm(args.model):
        return _token_pipeline(args)
    return Pipeline.load(
        args.model,
        codec=args.codec,
        beam_size=args.beam_size,
        rerank=args.rerank,
        reencode=args.reencode,
        no_repeat_ngram=args.no_repeat_ngram,
    )


def _token_pipeline(args: argparse.Namespace) -> Any:
    """The token-level peer behind the pipeline's summarize/expand methods (greedy)."""

    model, cfg, markers = load_token_lm(args.model)
    return TokenLMPipeline(model, encoders.load(args.codec or cfg.codec), markers)


def read_text(name: str) -> str:
    """The UTF-8 text of file ``name`` (``-``: stdin).

    Raises:
        ValueError: The bytes are not UTF-8 (the message names the offset).
        FileNotFoundError: No such file.
    """
    data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        where = "stdin" if name == "-" else name
        raise ValueError(
            f"{where} is not UTF-8 text (byte {e.start}: {data[e.start : e.start + 4]!r})"
        ) from e


def _run(prog: str, fn: Any) -> int:
    try:
        return fn()
    except (FileNotFoundError, ValueError, TypeError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_ERROR


def summarize_parser() -> argparse.ArgumentParser:
    """The ``lcm summarize`` argument parser."""
    p = argparse.ArgumentParser(
        prog="lcm summarize", description="Summarize a document (UTF-8 text) in concept space."
    )
    p.add_argument("file", metavar="FILE", help="text file, or - for stdin")
    _add_model_args(p, MAX_SENTENCES["summarize"])
    return p


def summarize_main(argv: Sequence[str]) -> int:
    """``lcm summarize FILE|-``: print a summary of the document."""
    p = summarize_parser()
    args = p.parse_args(argv)
    check_decoding_args(p, args)

    def run() -> int:
        text = read_text(args.file)
        pipe = _pipeline(args)
        print(pipe.summarize(text, args.max_sentences, **_options(args)))
        return EXIT_OK

    return _run("lcm summarize", run)


def expand_parser() -> argparse.ArgumentParser:
    """The ``lcm expand`` argument parser."""
    p = argparse.ArgumentParser(
        prog="lcm expand", description="Expand a summary into a document in concept space."
    )
    p.add_argument("summary", help="the summary text, or - to read it from stdin")
    _add_model_args(p, MAX_SENTENCES["expand"])
    return p


def expand_main(argv: Sequence[str]) -> int:
    """``lcm expand "text"``: print a document expanding the summary."""
    p = expand_parser()
    args = p.parse_args(argv)
    check_decoding_args(p, args)

    def run() -> int:
        text = read_text("-") if args.summary == "-" else args.summary
        pipe = _pipeline(args)
        print(pipe.expand(text, args.max_sentences, **_options(args)))
        return EXIT_OK

    return _run("lcm expand", run)


def generate_parser() -> argparse.ArgumentParser:
    """The ``lcm generate`` argument parser."""
    p = argparse.ArgumentParser(
        prog="lcm generate",
        description="Continue a document (UTF-8 text, segmented into sentences) in concept "
        "space; prints the new sentences, one per line.",
    )
    p.add_argument("file", metavar="FILE", help="text file, or - for stdin")
    _add_model_args(p, MAX_SENTENCES["generate"])
    return p


def generate_main(argv: Sequence[str]) -> int:
    """``lcm generate FILE|-``: continue a document, one new sentence per line."""
    p = generate_parser()
    args = p.parse_args(argv)
    check_decoding_args(p, args)

    def run() -> int:

        prefix = text_sentences(read_text(args.file))
        if not prefix:
            raise ValueError(f"{args.file} holds no sentence to continue")
        pipe = _pipeline(args)
        for sentence in pipe.generate(prefix, args.max_sentences, **_options(args)):
            print(sentence)
        return EXIT_OK

    return _run("lcm generate", run)


def eval_task_parser() -> argparse.ArgumentParser:
    """The ``lcm eval-task`` argument parser."""
    p = argparse.ArgumentParser(
        prog="lcm eval-task",
        description="Evaluate summarization or summary expansion on a pairs file (or any "
        'JSONL of {"summary", "document"}): the model, lead-k baselines and the codec '
        "round-trip ceiling, side by side.",
    )
    p.add_argument("--task", choices=("summarize", "expand"), required=True)
    p.add_argument("--data", required=True, help="pairs JSONL (.gz ok)")
    p.add_argument("--split", default="test", help="records of this split ('all': every one)")
    p.add_argument("--limit", type=positive_int, default=None, help="first N items only")
    p.add_argument(
        "--systems",
        default="model,lead-1,lead-3,roundtrip",
        help="comma-separated: model, lead-K, roundtrip (default: %(default)s)",
    )
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results here")
    p.add_argument("--samples", type=int, default=3, help="print this many model outputs")
    _add_model_args(p, None)  # None: the task's own (MAX_SENTENCES)
    return p


def eval_task_main(argv: Sequence[str]) -> int:
    """``lcm eval-task``: ROUGE, OVL-3, REP-4 and length of the model and the baselines."""
    p = eval_task_parser()
    args = p.parse_args(argv)
    check_decoding_args(p, args)
    for name in (s for s in args.systems.split(",") if s):
        known = name in ("model", "roundtrip") or (name[:5] == "lead-" and name[5:].isdigit())
        if not known or name == "lead-0" or (name[:5] == "lead-" and int(name[5:]) < 1):
            p.error(f"--systems: unknown system {name!r} (model, lead-K with K >= 1, roundtrip)")

    def run() -> int:

        examples = T.read_examples(
            args.data,
            args.task,
            split=None if args.split == "all" else args.split,
            limit=args.limit,
        )
        max_sentences = args.max_sentences or MAX_SENTENCES[args.task]
        names = [s for s in args.systems.split(",") if s]
        pipe = None
        if any(n in ("model", "roundtrip") for n in names):
            pipe = _pipeline(args)
        results: dict[str, dict[str, float]] = {}
        outputs: dict[str, list[str]] = {}
        for name in names:
            if name == "model":
                system = T.model_system(pipe, args.task, max_sentences, **_options(args))
            elif name == "roundtrip":
                system = T.roundtrip(pipe.decode, pipe.codec.encode)
            elif name.startswith("lead-") and name[5:].isdigit():
                system = T.lead(int(name[5:]))
            else:
                raise ValueError(f"unknown system {name!r} (model, lead-K, roundtrip)")
            t0 = time.perf_counter()
            outputs[name] = system(examples)
            results[name] = {
                **T.score(examples, outputs[name]),
                "seconds": time.perf_counter() - t0,
            }
            print(
                f"{name}: {len(examples)} items in {results[name]['seconds']:.1f}s", file=sys.stderr
            )
        print(f"{args.task} on {args.data} ({args.split}, {len(examples)} items)")
        print(T.format_table(results))
        if "model" in outputs:
            for ex, out in list(zip(examples, outputs["model"]))[: args.samples]:
                print(f"\n[{ex.id}] input: {ex.source[:300]}\n  reference: {ex.reference[:300]}")
                print(f"  model: {out}")
        if args.json:
            record = {
                "task": args.task,
                "data": args.data,
                "split": args.split,
                "items": len(examples),
                "model": args.model,
                "max_sentences": max_sentences,
                "options": _options(args),
                "decoding": decoding_name(args.beam_size, args.rerank),  # as in eval-codec
                "reencode": getattr(pipe, "reencode", None),  # resolved (None: no pipeline)
                "no_repeat_ngram": getattr(pipe, "no_repeat_ngram", None),
                "results": results,
                "samples": {
                    name: [{"id": ex.id, "output": o} for ex, o in zip(examples, outs)][:20]
                    for name, outs in outputs.items()
                },
            }
            write_text_atomic(Path(args.json), json.dumps(record, indent=1) + "\n")
        return EXIT_OK

    return _run("lcm eval-task", run)

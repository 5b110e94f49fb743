"""``lcm encode``, ``lcm decode`` and ``lcm eval-codec``.

``encode`` / ``decode``: sentences (text lines) <-> concept vectors on disk.

Vectors are read and written as ``.npy`` (float32 [N, D]) or Parquet (a ``text`` column when
encoding, and a fixed-size list<float32> ``embedding`` column). Blank input lines are an error
(there is no vector for "no sentence"); decoded sentences are written one per line.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from encoders.codec import ENCODE_PRECISIONS
from encoders.evaluate import (
    eval_record,
    evaluate_codec,
    format_report,
    load_codec,
    load_heldout,
)
from encoders.loader import load
from lcm.cli.args import add_decoding_args, check_decoding_args, non_negative_float, positive_int
from lcm.io import write_bytes_atomic, write_text_atomic


def _read_lines(path: str) -> list[str]:
    if path == "-":
        text = sys.stdin.read()
    else:
        if not Path(path).is_file():
            raise FileNotFoundError(f"input file not found: {path}")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path} is not UTF-8 text (byte {e.start})") from None
    lines = text.splitlines()
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        raise ValueError(f"{path}: {len(blank)} blank line(s) (line {shown}); remove them")
    return lines


def _write_vectors(path: str, vectors: np.ndarray, texts: list[str], column: str) -> None:
    buffer = io.BytesIO()
    if path.endswith(".npy"):
        np.save(buffer, vectors)
    elif path.endswith(".parquet"):
        flat = pa.array(vectors.reshape(-1), pa.float32())
        emb = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
        pq.write_table(pa.table({"text": pa.array(texts, pa.string()), column: emb}), buffer)
    else:
        raise ValueError(f"output {path}: use a .npy or .parquet file name")
    write_bytes_atomic(Path(path), buffer.getvalue())


def _read_vectors(path: str, column: str) -> np.ndarray:
    if not Path(path).is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    if path.endswith(".parquet"):
        table = pq.read_table(path)
        if column not in table.column_names:
            raise ValueError(f"{path}: no column {column!r} (columns: {table.column_names})")
        values = table.column(column).combine_chunks()
        if not pa.types.is_list(values.type) and not pa.types.is_fixed_size_list(values.type):
            raise ValueError(f"{path}: column {column!r} is {values.type}, not a list of floats")
        lengths = set(values.value_lengths().to_pylist()) if len(values) else {0}
        if len(lengths) != 1 or values.null_count:
            raise ValueError(f"{path}: column {column!r} holds vectors of different lengths")
        return values.flatten().to_numpy(zero_copy_only=False).reshape(len(values), -1)
    raise ValueError(f"input {path}: use a .npy or .parquet file")


def encode_main(argv: Sequence[str]) -> int:
    """``lcm encode INPUT -o OUT.npy|OUT.parquet``."""
    parser = argparse.ArgumentParser(
        prog="lcm encode", description="Encode sentences (one per line) into concept vectors."
    )
    parser.add_argument("input", help="text file with one sentence per line, or - for stdin")
    parser.add_argument("-o", "--output", required=True, help=".npy or .parquet output")
    parser.add_argument("--model", default="default", help="'default' or a model directory")
    parser.add_argument("--column", default="embedding", help="Parquet vector column name")
    parser.add_argument("--lang", help="language of the text, SONAR models only (eng_Latn, ...)")
    parser.add_argument(
        "--precision",
        choices=ENCODE_PRECISIONS,
        default="float32",
        help="matrix products in float32, or bfloat16 (faster on CPUs with avx512_bf16; "
        "vectors within about 0.3%%)",
    )
    args = parser.parse_args(argv)
    if Path(args.output).is_dir():
        parser.error(f"-o {args.output} is a directory; give a file name")
    try:
        if not args.output.endswith((".npy", ".parquet")):
            raise ValueError(f"output {args.output}: use a .npy or .parquet file name")
        lines = _read_lines(args.input)
        codec = load(args.model, source_lang=args.lang, encode_precision=args.precision)
        vectors = codec.encode(lines)
        _write_vectors(args.output, vectors, lines, args.column)
    except (FileNotFoundError, ValueError) as e:
        print(f"lcm encode: {e}", file=sys.stderr)
        return 2
    print(f"encoded {len(lines)} sentences -> {args.output} {vectors.shape}", file=sys.stderr)
    return 0


def decode_main(argv: Sequence[str]) -> int:
    """``lcm decode IN.npy|IN.parquet [-o OUT.txt]``."""
    parser = argparse.ArgumentParser(
        prog="lcm decode", description="Decode concept vectors into sentences (one per line)."
    )
    parser.add_argument("input", help=".npy [N, D] or .parquet file with a vector column")
    parser.add_argument("-o", "--output", default="-", help="text output (default: stdout)")
    parser.add_argument("--model", default="default", help="'default' or a model directory")
    parser.add_argument("--column", default="embedding", help="Parquet vector column name")
    add_decoding_args(parser)
    parser.add_argument("--max-len", type=int, default=None, help="most tokens per sentence")
    parser.add_argument("--lang", help="language to write, SONAR models only (eng_Latn, ...)")
    args = parser.parse_args(argv)
    check_decoding_args(parser, args)
    if args.output != "-" and Path(args.output).is_dir():
        parser.error(f"-o {args.output} is a directory; give a file name")
    try:
        vectors = _read_vectors(args.input, args.column)
        codec = load(args.model, target_lang=args.lang)
        texts = codec.decode(
            vectors, beam_size=args.beam_size, max_len=args.max_len, rerank=args.rerank
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"lcm decode: {e}", file=sys.stderr)
        return 2
    # One sentence per line, whatever bytes the decoder produced.
    out = "".join(" ".join(t.split()) + "\n" for t in texts)
    if args.output == "-":
        sys.stdout.write(out)
    else:
        write_bytes_atomic(Path(args.output), out.encode())
    return 0


def eval_codec_main(argv: Sequence[str] | None = None) -> int:
    """``lcm eval-codec MODEL --data DIR``: round-trip BLEU of a codec on held-out text."""
    parser = argparse.ArgumentParser(
        prog="lcm eval-codec",
        description="Round-trip BLEU and exact match of decode(encode(x)) on held-out "
        "sentences, per source, clean and with relative-norm noise on the vectors.",
    )
    parser.add_argument("model", help='"default", a model directory, or a training run dir')
    parser.add_argument(
        "--data", default="~/data/codec", help="prepared codec data (tools/prepare_codec_data.py)"
    )
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--max-words", type=positive_int, default=30)
    parser.add_argument("--per-source", type=positive_int, default=200, help="sentences per source")
    parser.add_argument(
        "--noise", type=non_negative_float, nargs="*", default=[0.1], help="relative norms (>= 0)"
    )
    add_decoding_args(parser)
    parser.add_argument(
        "--encode-precision",
        choices=ENCODE_PRECISIONS,
        default="float32",
        help="precision of the encoder's matrix products (see encoders.load)",
    )
    parser.add_argument("--json", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    check_decoding_args(parser, args)
    try:
        codec, step = load_codec(args.model)
        codec.encode_precision = args.encode_precision
        sentences, sources = load_heldout(args.data, args.split, args.max_words, args.per_source)
    except (FileNotFoundError, ValueError) as e:
        print(f"lcm eval-codec: {e}", file=sys.stderr)
        return 2
    report = evaluate_codec(
        codec, sentences, sources, args.noise, args.beam_size, rerank=args.rerank
    )
    print(format_report(report))
    if args.json:
        write_text_atomic(args.json, json.dumps(report.as_dict(), indent=1))
    if step is not None:
        # A run's evaluations accumulate beside its metrics: `lcm plot` draws them.
        with open(Path(args.model).expanduser() / "eval.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(eval_record(report, step, args.split)) + "\n")
    return 0

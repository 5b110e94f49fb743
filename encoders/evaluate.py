"""Round-trip evaluation of a codec: ``decode(encode(x))`` against ``x``.

Reports corpus BLEU (sacrebleu, default 13a tokenization) and the exact-match rate, overall
and per source, on clean vectors and on vectors with Gaussian noise of a given relative norm
(``||n|| = r * ||v||``: how well the decoder copes with imperfect predicted concepts), plus
encode/decode throughput. ``lcm eval-codec`` is the command line.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from encoders.codec import Codec
from encoders.loader import load
from encoders.tokenizer import Tokenizer
from trainers.state import load_trained_model


@dataclasses.dataclass(frozen=True)
class RoundTripScores:
    """Scores of one set of sentences."""

    n: int
    bleu: float
    exact_match: float


@dataclasses.dataclass
class CodecReport:
    """Everything one evaluation measured."""

    overall: dict[str, RoundTripScores]  # condition ("clean", "noise=0.1") -> scores
    per_source: dict[str, dict[str, RoundTripScores]]  # source -> condition -> scores
    encode_per_s: float
    decode_per_s: float
    examples: list[tuple[str, str]]  # (reference, clean round trip)
    decoding: str = "greedy"  # see decoding_name

    def as_dict(self) -> dict:
        """JSON-ready view."""
        return dataclasses.asdict(self)


def add_relative_noise(vectors: np.ndarray, relative_norm: float, seed: int = 0) -> np.ndarray:
    """``v + n`` with Gaussian direction and ``||n|| = relative_norm * ||v||`` per row."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=vectors.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=-1, keepdims=True)
    scale = relative_norm * np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors + noise * scale).astype(np.float32)


def score(references: Sequence[str], hypotheses: Sequence[str]) -> RoundTripScores:
    """Corpus BLEU (0-100) and exact-match rate (0-1)."""
    import sacrebleu  # imported here: only evaluation needs it

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        return RoundTripScores(0, float("nan"), float("nan"))
    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score
    exact = float(np.mean([r.strip() == h.strip() for r, h in zip(references, hypotheses)]))
    return RoundTripScores(len(references), float(bleu), exact)


def load_heldout(
    data_dir: str | Path,
    split: str = "test",
    max_words: int = 30,
    per_source: int = 200,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Sentences of a prepared split (``tools/prepare_codec_data.py`` output) and their sources.

    Keeps sentences of at most ``max_words`` words and draws up to ``per_source`` of them from
    each source, deterministically.
    """
    data_dir = Path(data_dir).expanduser()
    text_file, source_file = data_dir / f"{split}.txt", data_dir / f"{split}.source.npy"
    for f in (text_file, source_file, data_dir / "manifest.json"):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found; is {data_dir} a prepared codec data dir?")
    manifest = data_dir / "manifest.json"
    try:
        names = json.loads(manifest.read_text(encoding="utf-8"))["sources"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{manifest}: not a codec data manifest (need a 'sources' list): {e}"
        ) from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{manifest}: 'sources' must be a list of names, got {names!r:.80}")
    try:
        lines = text_file.read_text(encoding="utf-8").splitlines()
        source_ids = np.load(source_file, allow_pickle=False)
    except UnicodeDecodeError as e:
        raise ValueError(f"{text_file} is not UTF-8 text (byte {e.start})") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{source_file}: not a readable .npy array ({e})") from None
    if len(lines) != len(source_ids):
        raise ValueError(f"{text_file} has {len(lines)} lines but {len(source_ids)} source ids")
    if source_ids.ndim != 1 or not np.issubdtype(source_ids.dtype, np.integer):
        raise ValueError(f"{source_file}: need a 1-D integer array, got {source_ids.dtype}")
    bad = np.flatnonzero((source_ids < 0) | (source_ids >= len(names)))
    if bad.size:
        raise ValueError(
            f"{source_file}: source id {int(source_ids[bad[0]])} at line {bad[0] + 1} is out of "
            f"range for the manifest's {len(names)} sources"
        )
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if blank:
        raise ValueError(f"{text_file}: {len(blank)} blank line(s), the first at line {blank[0]}")
    rng = np.random.default_rng(seed)
    sentences, sources = [], []
    for sid in np.unique(source_ids):
        idx = [i for i in np.flatnonzero(source_ids == sid) if len(lines[i].split()) <= max_words]
        for i in sorted(rng.permutation(idx)[:per_source]):
            sentences.append(lines[i])
            sources.append(names[int(sid)])
    if not sentences:
        raise ValueError(
            f"{text_file}: no sentence of at most {max_words} words in split {split!r}"
        )
    return sentences, sources


def evaluate_codec(
    codec: Codec,
    sentences: Sequence[str],
    sources: Sequence[str],
    noise_levels: Sequence[float] = (0.1,),
    beam_size: int = 1,
    seed: int = 0,
    rerank: bool = False,
) -> CodecReport:
    """Round-trip ``sentences`` through ``codec`` clean and with each relative noise level.

    ``beam_size`` and ``rerank`` are :meth:`Codec.decode`'s options.
    """
    t0 = time.perf_counter()
    vectors = codec.encode(list(sentences))
    encode_s = time.perf_counter() - t0
    conditions = {"clean": vectors}
    for r in noise_levels:
        conditions[f"noise={r:g}"] = add_relative_noise(vectors, r, seed)
    outputs: dict[str, list[str]] = {}
    decode_s = 0.0
    for name, vecs in conditions.items():
        t0 = time.perf_counter()
        outputs[name] = codec.decode(vecs, beam_size=beam_size, rerank=rerank)
        decode_s += time.perf_counter() - t0
    overall = {name: score(sentences, out) for name, out in outputs.items()}
    per_source: dict[str, dict[str, RoundTripScores]] = {}
    for src in sorted(set(sources)):
        idx = [i for i, s in enumerate(sources) if s == src]
        per_source[src] = {
            name: score([sentences[i] for i in idx], [out[i] for i in idx])
            for name, out in outputs.items()
        }
    n = len(sentences)
    return CodecReport(
        overall=overall,
        per_source=per_source,
        encode_per_s=n / max(encode_s, 1e-9),
        decode_per_s=n * len(conditions) / max(decode_s, 1e-9),
        examples=list(zip(sentences[:: max(n // 8, 1)], outputs["clean"][:: max(n // 8, 1)])),
        decoding=decoding_name(beam_size, rerank),
    )


def format_report(report: CodecReport) -> str:
    """A plain-text table: one row per source and one for all, BLEU / exact per condition."""
    conditions = list(report.overall)
    header = f"{'source':<22}{'n':>6}" + "".join(
        f"{c + ' BLEU':>18}{c + ' exact':>18}" for c in conditions
    )
    rows = [header, "-" * len(header)]

    def row(name: str, scores: dict[str, RoundTripScores]) -> str:
        n = next(iter(scores.values())).n
        cells = "".join(f"{s.bleu:>18.1f}{s.exact_match:>18.3f}" for s in scores.values())
        return f"{name:<22}{n:>6}{cells}"

    rows += [row(src, scores) for src, scores in report.per_source.items()]
    rows += ["-" * len(header), row("ALL", report.overall)]
    rows.append(
        f"encode {report.encode_per_s:.0f} sentences/s, decode ({report.decoding}) "
        f"{report.decode_per_s:.1f} sentences/s (this machine)"
    )
    rows.append("examples (reference => round trip):")
    rows += [f"  {ref!r}\n    => {hyp!r}" for ref, hyp in report.examples]
    return "\n".join(rows)


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a training run directory (not a model directory)."""
    return (path / "checkpoints").is_dir() and (path / "config.yaml").is_file()


def load_codec(model: str) -> tuple[Codec, int | None]:
    """A codec from a model directory / "default", or from a training run's newest checkpoint.

    Returns:
        The codec and the training step of the checkpoint (None for a model directory).
    """
    path = Path(model).expanduser()
    if is_run_dir(path):
        cfg, trained, step = load_trained_model(path)
        tokenizer_file = Path(cfg.data.data_dir).expanduser() / "tokenizer.model"
        return Codec(trained, Tokenizer(tokenizer_file.read_bytes())), step
    return load(model), None


def decoding_name(beam_size: int, rerank: bool) -> str:
    """How sentences were decoded, e.g. "greedy", "beam4", "beam8+rerank"."""
    name = "greedy" if beam_size == 1 else f"beam{beam_size}"
    return name + "+rerank" if rerank else name


def eval_record(report: CodecReport, step: int, split: str) -> dict[str, float | int | str]:
    """One ``eval.jsonl`` line of a run: overall BLEU and exact match per condition.

    Keys: ``eval_bleu``, ``eval_exact`` (clean vectors), ``eval_bleu_noise0.1`` (noisy ones);
    a decoding other than greedy adds its name (``eval_bleu_beam8_rerank``), so that
    ``lcm plot`` draws each decoding as its own curve.
    """
    record: dict[str, float | int | str] = {
        "step": step,
        "split": split,
        "decoding": report.decoding,
    }
    decoding = "" if report.decoding == "greedy" else "_" + report.decoding.replace("+", "_")
    for condition, scores in report.overall.items():
        suffix = "" if condition == "clean" else "_" + condition.replace("=", "")
        suffix = decoding + suffix
        record[f"eval_bleu{suffix}"] = scores.bleu
        record[f"eval_exact{suffix}"] = scores.exact_match
    return record

"""Decoder round trip of residual-quantized concepts, as a function of the number of codebooks.

Quant-LCM (paper section 2.4) models concepts through residual vector quantization: K
codebooks of V units fitted on normalized concepts, each level quantizing what the previous
ones left. This measures what that costs before any LCM is involved: sentences are encoded,
quantized with the first k codebooks, denormalized and decoded, and the text is compared with
the original (BLEU, exact match), alongside the relative error of the vectors. The unquantized
round trip is the ceiling. ``lcm eval-rvq`` is the command line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from encoders.codec import Codec
from encoders.evaluate import score
from lcm.data.normalizer import Normalizer
from lcm.models.rvq import fit_rvq, rvq_decode, rvq_encode, rvq_partial_sums


@dataclasses.dataclass(frozen=True)
class QuantizedRoundTrip:
    """Round trip through the first ``codebooks`` levels (0 levels: unquantized)."""

    codebooks: int
    relative_error: float  # mean ||v_hat - v|| / ||v|| in the codec's space
    bleu: float
    exact_match: float


def rvq_round_trip(
    codec: Codec,
    fit_sentences: Sequence[str],
    test_sentences: Sequence[str],
    *,
    num_codebooks: int = 8,
    codebook_size: int = 256,
    levels: Sequence[int] | None = None,
    iters: int = 20,
    seed: int = 0,
) -> list[QuantizedRoundTrip]:
    """Fit a normalizer and RVQ codebooks on ``fit_sentences``; score ``test_sentences``.

    Args:
        codec: Encodes and decodes the sentences.
        fit_sentences: Sentences whose concepts fit the normalizer and the codebooks
            (at least ``codebook_size``).
        test_sentences: Held-out sentences to round-trip.
        num_codebooks: K.
        codebook_size: V.
        levels: Numbers of codebooks to score (default 1..K).
        iters: k-means iterations per level.
        seed: Seed of the k-means initialization.

    Returns:
        The unquantized round trip (``codebooks=0``), then one entry per level.
    """
    levels = list(range(1, num_codebooks + 1)) if levels is None else sorted(set(levels))
    if not levels or levels[0] < 1 or levels[-1] > num_codebooks:
        raise ValueError(f"levels must lie in 1..{num_codebooks}, got {levels}")
    if not test_sentences:
        raise ValueError("no test sentences")
    fit_vectors = codec.encode(list(fit_sentences))
    normalizer = Normalizer.fit(fit_vectors)
    codebooks = fit_rvq(
        normalizer.normalize(fit_vectors), num_codebooks, codebook_size, iters=iters, seed=seed
    )
    vectors = codec.encode(list(test_sentences))
    z = jnp.asarray(normalizer.normalize(vectors))
    codes = rvq_encode(z, jnp.asarray(codebooks))
    # Entry k of the partial sums is the reconstruction from codebooks 0..k-1.
    partial = rvq_partial_sums(codes, jnp.asarray(codebooks))
    full = rvq_decode(codes, jnp.asarray(codebooks))
    results = [_scored(codec, test_sentences, vectors, vectors, 0)]
    for k in levels:
        z_hat = full if k == num_codebooks else partial[:, k]
        approx = normalizer.denormalize(np.asarray(z_hat)).astype(np.float32)
        results.append(_scored(codec, test_sentences, vectors, approx, k))
    return results


def _scored(
    codec: Codec, sentences: Sequence[str], vectors: np.ndarray, approx: np.ndarray, k: int
) -> QuantizedRoundTrip:
    error = np.linalg.norm(approx - vectors, axis=-1) / np.linalg.norm(vectors, axis=-1)
    s = score(list(sentences), codec.decode(approx))
    return QuantizedRoundTrip(k, float(error.mean()), s.bleu, s.exact_match)


def format_table(rows: Sequence[QuantizedRoundTrip]) -> str:
    """Markdown table of the round trips."""
    lines = [
        "| codebooks | relative error | BLEU | exact match |",
        "|---|---|---|---|",
    ]
    for r in rows:
        name = "unquantized" if r.codebooks == 0 else str(r.codebooks)
        lines.append(
            f"| {name} | {r.relative_error:.3f} | {r.bleu:.1f} | {100 * r.exact_match:.1f}% |"
        )
    return "\n".join(lines)


def sample_lines(path: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` non-empty lines of a text file, drawn deterministically."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path} has no non-empty line")
    pick = np.random.default_rng(seed).permutation(len(lines))[:count]
    return [lines[i] for i in sorted(pick)]

"""Summarization and summary-expansion evaluation, for the model and for baselines alike.

Every system maps an input text to an output text; the harness scores outputs against the
references with

- ROUGE-1/2/L F-measure (the ``rouge-score`` package, Porter stemming),
- OVL-3: the share of the output's word 3-grams that occur in the source (input) text,
- REP-4: the share of the output's word 4-grams that repeat an earlier 4-gram of it,
- length: words and sentences of the output.

Systems: ``model`` (a :class:`~lcm.pipeline.Pipeline`), ``lead-k`` (the first k sentences of
the input) and ``roundtrip`` (the reference sentences encoded and decoded by the codec: the
ceiling that the concept space allows).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lcm.text.readers import read_documents
from lcm.text.segment import text_sentences

if TYPE_CHECKING:
    import numpy as np

TASKS = ("summarize", "expand")
METRICS = ("rouge1", "rouge2", "rougeL", "ovl3", "rep4", "words", "sentences")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclasses.dataclass(frozen=True)
class TaskExample:
    """One evaluation item.

    Attributes:
        id: Pair id.
        source: The input text (the document to summarize, or the summary to expand).
        reference: The expected output.
    """

    id: str
    source: str
    reference: str


def words(text: str) -> list[str]:
    """Lower-cased word tokens (the n-gram unit of OVL-3 and REP-4)."""
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """All ``n``-grams of ``tokens`` in order."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def overlap(output: str, source: str, n: int = 3) -> float:
    """OVL-n: share of the output's n-grams found in the source (0 when it has none)."""
    out = ngrams(words(output), n)
    if not out:
        return 0.0
    src = set(ngrams(words(source), n))
    return sum(g in src for g in out) / len(out)


def repetition(output: str, n: int = 4) -> float:
    """REP-n: share of the output's n-grams that repeat an earlier one (0 when it has none)."""
    out = ngrams(words(output), n)
    if not out:
        return 0.0
    return 1.0 - len(set(out)) / len(out)


def read_examples(
    path: str, task: str, *, split: str | None = "test", limit: int | None = None
) -> list[TaskExample]:
    """Evaluation items from a pairs file or any JSONL of ``{"summary", "document"}``.

    Args:
        path: The file (.gz ok).
        task: "summarize" (document -> summary) or "expand" (summary -> document).
        split: Keep records of this ``"split"`` (None: all; records without the field are
            kept only when ``split`` is None).
        limit: Keep the first ``limit`` items.

    Raises:
        ValueError: Unknown task, or no usable record.
    """

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    out = []
    for doc in read_documents(path, "pairs", split=split):
        document, summary = doc.text, str(doc.meta["summary"]).strip()
        if not document.strip() or not summary:
            continue
        source, reference = (document, summary) if task == "summarize" else (summary, document)
        out.append(TaskExample(doc.id, source, reference))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise ValueError(f"{path}: no summary/document records (split {split!r})")
    return out


def score(examples: Sequence[TaskExample], outputs: Sequence[str]) -> dict[str, float]:
    """Mean metrics of ``outputs`` (one per example); ROUGE and OVL/REP in [0, 1]."""
    from rouge_score import rouge_scorer

    if len(outputs) != len(examples):
        raise ValueError(f"{len(outputs)} outputs for {len(examples)} examples")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    sums: Counter[str] = Counter()
    for ex, out in zip(examples, outputs):
        rouge = scorer.score(ex.reference, out)
        sums["rouge1"] += rouge["rouge1"].fmeasure
        sums["rouge2"] += rouge["rouge2"].fmeasure
        sums["rougeL"] += rouge["rougeL"].fmeasure
        sums["ovl3"] += overlap(out, ex.source, 3)
        sums["rep4"] += repetition(out, 4)
        sums["words"] += len(words(out))
        sums["sentences"] += len(text_sentences(out)) if out.strip() else 0
    n = len(examples)
    return {
        k: sums[k] / n for k in ("rouge1", "rouge2", "rougeL", "ovl3", "rep4", "words", "sentences")
    }


def lead(k: int) -> Callable[[Sequence[TaskExample]], list[str]]:
    """The lead-k baseline: the first ``k`` sentences of the input."""

    def system(examples: Sequence[TaskExample]) -> list[str]:
        return [" ".join(text_sentences(ex.source)[:k]) for ex in examples]

    return system


def roundtrip(
    decode: Callable[[np.ndarray], list[str]],
    encode: Callable[[list[str]], np.ndarray],
    batch: int = 256,
) -> Callable[[Sequence[TaskExample]], list[str]]:
    """The concept-space ceiling: each reference sentence through ``decode(encode(.))``.

    Args:
        decode: Vectors [N, D] -> N sentences (e.g. ``Pipeline.decode``, ``Codec.decode``).
        encode: Sentences -> [N, D] vectors (``Codec.encode``).
        batch: Sentences per encode/decode call.
    """

    def system(examples: Sequence[TaskExample]) -> list[str]:
        per = [text_sentences(ex.reference) for ex in examples]
        flat = [s for sents in per for s in sents]
        decoded: list[str] = []
        for i in range(0, len(flat), batch):
            decoded.extend(decode(encode(flat[i : i + batch])))
        out, start = [], 0
        for sents in per:
            out.append(" ".join(decoded[start : start + len(sents)]))
            start += len(sents)
        return out

    return system


def model_system(
    pipeline: Any, task: str, max_sentences: int, **options: Any
) -> Callable[[Sequence[TaskExample]], list[str]]:
    """The LCM through its pipeline (documents generated together in batches)."""

    def system(examples: Sequence[TaskExample]) -> list[str]:
        sources = [ex.source for ex in examples]
        if task == "summarize":
            return pipeline.summarize_many(sources, max_sentences, **options)
        return pipeline.expand_many(sources, max_sentences, **options)

    return system


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table of system -> metrics (ROUGE and OVL/REP as percentages)."""
    head = "| system | ROUGE-1 | ROUGE-2 | ROUGE-L | OVL-3 | REP-4 | words | sentences |"
    lines = [head, "|" + "---|" * 8]
    for name, m in rows.items():
        pct = [f"{100 * m[k]:.1f}" for k in ("rouge1", "rouge2", "rougeL", "ovl3", "rep4")]
        lines.append(
            f"| {name} | " + " | ".join(pct) + f" | {m['words']:.1f} | {m['sentences']:.2f} |"
        )
    return "\n".join(lines)

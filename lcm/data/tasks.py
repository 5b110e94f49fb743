"""Fine-tuning documents for the two embedding-space tasks: summarization and expansion.

Each pair ``{"summary", "document"}`` gives one training document per task, as sentences::

    summarize: document sentences, "[SUMMARY]:", summary sentences   (+ EOT from the loader)
    expand:    summary sentences,  "[EXPAND]:",  document sentences  (+ EOT from the loader)

The input and the task marker are *context*: their number is stored in the document's
``meta_json`` (``{"context": k, ...}``), so the LCM loss is taken on the target concepts and
the end-of-text concept only (see :mod:`lcm.data.concepts`). A document that would not fit
``max_concepts`` (EOT included) is cut: the target keeps its first sentences (at most half of
the room when the input needs the rest), then the input keeps its first sentences.

With ``plain=True`` each pair's document is also written as an ordinary document (context 0),
so one fine-tuning run keeps modelling the domain's text while it learns the tasks.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lcm.data.shards import ShardWriter
from lcm.text.readers import DataError, ReadStats, read_documents
from lcm.text.segment import segment_document

# The task markers: encoded like any sentence and placed between input and target.
TASK_MARKERS: dict[str, str] = {"summarize": "[SUMMARY]:", "expand": "[EXPAND]:"}


@dataclasses.dataclass(frozen=True)
class TaskExample:
    """One fine-tuning document.

    Attributes:
        sentences: Input sentences, the task marker, then the target sentences.
        context: Number of leading sentences that are input (the marker included).
    """

    sentences: tuple[str, ...]
    context: int


def task_example(
    task: str, inputs: Sequence[str], targets: Sequence[str], max_concepts: int
) -> TaskExample:
    """Lay out one example within ``max_concepts`` concepts (one is left for the EOT).

    Args:
        task: A key of :data:`TASK_MARKERS`.
        inputs: Input sentences (at least one).
        targets: Target sentences (at least one).
        max_concepts: The model's context length T (>= 4).

    Raises:
        ValueError: Unknown task, empty input or target, or ``max_concepts < 4``.
    """
    if task not in TASK_MARKERS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_MARKERS)}")
    if not inputs or not targets:
        raise ValueError("a task example needs at least one input and one target sentence")
    if max_concepts < 4:
        raise ValueError(f"max_concepts must be >= 4, got {max_concepts}")
    room = max_concepts - 2  # the marker and the end-of-text concept
    n_target = min(len(targets), max(room - len(inputs), room // 2))
    n_input = min(len(inputs), room - n_target)
    sentences = (*inputs[:n_input], TASK_MARKERS[task], *targets[:n_target])
    return TaskExample(sentences, n_input + 1)


def build_task_shards(
    pairs_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    tasks: Sequence[str] = ("summarize", "expand"),
    split: str = "train",
    max_concepts: int = 128,
    max_chars: int = 256,
    plain: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Write the fine-tuning documents of the pairs of ``split`` as (unembedded) shards.

    Args:
        pairs_path: A pairs file (``{"id", "summary", "document", "split"}`` JSONL, .gz ok).
        out_dir: Output shard directory (then ``lcm data embed`` fills the embeddings).
        tasks: Which tasks (keys of :data:`TASK_MARKERS`).
        split: Pairs split to read ("train"; never train on "test").
        max_concepts: Context length T of the model to fine-tune.
        max_chars: Sentence length cap of the segmenter.
        plain: Also write each document as an ordinary document.
        overwrite: Replace shards already in ``out_dir``.
        progress: Show a progress bar.

    Returns:
        Counts: ``pairs``, documents per task (and ``plain``), ``truncated`` examples.

    Raises:
        DataError: The pairs file is unreadable or holds no pair of ``split``.
        ValueError: Unknown task.
    """
    from tqdm import tqdm

    for task in tasks:
        if task not in TASK_MARKERS:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_MARKERS)}")
    counts = {"pairs": 0, "truncated": 0, **{t: 0 for t in tasks}, "plain": 0}
    stats = ReadStats()
    docs = read_documents(pairs_path, "pairs", stats=stats, split=split)
    with ShardWriter(Path(out_dir), prefix="tasks", overwrite=overwrite) as writer:
        for doc in tqdm(docs, desc="tasks", unit="pair", disable=not progress, file=sys.stderr):
            document = segment_document(doc.paragraphs, max_chars)
            summary = segment_document([str(doc.meta["summary"])], max_chars)
            if not document or not summary:
                continue
            counts["pairs"] += 1
            for task in tasks:
                inputs, targets = (
                    (document, summary) if task == "summarize" else (summary, document)
                )
                example = task_example(task, inputs, targets, max_concepts)
                counts["truncated"] += len(example.sentences) != len(inputs) + len(targets) + 1
                meta = {"task": task, "context": example.context, "pair": doc.id}
                writer.write(f"{task}:{doc.id}", list(example.sentences), source=task, meta=meta)
                counts[task] += 1
            if plain:
                writer.write(f"plain:{doc.id}", document, source="plain", meta={"pair": doc.id})
                counts["plain"] += 1
        if counts["pairs"] == 0:
            writer.abort()
            raise DataError(f"{pairs_path}: no pairs of split {split!r}", path=str(pairs_path))
    return counts

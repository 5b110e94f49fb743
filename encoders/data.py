"""Codec training data: sentences from the document corpus, split, deduplicated, weighted by
source and tokenized once; and the deterministic, length-bucketed :class:`CodecBatchSource`.

``prepare`` (also ``python tools/prepare_codec_data.py``) writes into ``out_dir``:

* ``tokenizer.model``: SentencePiece, trained on the weighted train mixture;
* ``{split}.txt``: unique sentences, one a line (split = train, valid, test);
* ``{split}.tokens.npy`` (uint16/int32 ids, all sentences concatenated, no EOS),
  ``{split}.offsets.npy`` (int64 [n + 1]) and ``{split}.source.npy`` (uint8 source index);
* ``train.copies.npy``: how often each train sentence appears in the mixture (source weight);
* ``manifest.json``: sources, per split/source sentence counts, weights and settings.

Splits are chosen per document by a hash of (source, document id), so a document never
straddles splits; whole sources can be held out for testing, and the unseen-domain sources
of :data:`lcm.text.heldout.HELDOUT_SOURCES` always are; the pairs file keeps its own split.
A valid/test sentence that also occurs in train is dropped from valid/test.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from encoders.config import CodecDataConfig, CodecModelConfig
from encoders.tokenizer import EOS_ID, Tokenizer, train_tokenizer
from lcm.io import save_npy_atomic, write_bytes_atomic
from lcm.text.heldout import HELDOUT_SOURCES
from lcm.text.readers import ReadStats, read_documents
from lcm.text.segment import segment_document

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
PAIRS_SOURCE = "debian_pairs"

# Copies per train sentence by source (data README: the text leans to software and archaic or
# biblical English, so cap the Bible, commentaries and dictionary fragments and repeat the
# literature and the Debian descriptions). Unlisted sources get 1.
DEFAULT_WEIGHTS: dict[str, float] = {
    "austen": 3.0,
    PAIRS_SOURCE: 3.0,
    "debian_faq": 2.0,
    "debian_handbook": 2.0,
    "debian_history": 2.0,
    "debian_policy": 2.0,
    "debian_reference": 2.0,
    "developers_reference": 2.0,
    "fortunes": 1.5,
    "gcide_quotes": 1.5,
    "bible_web": 0.5,
    "comm_mhcc": 0.5,
    "comm_scofield": 0.5,
    "comm_tdavid": 0.25,
    "gcide_defs": 0.15,
    "wordnet": 0.5,
    "foldoc": 0.5,
    "linux_doc": 0.5,
    # The game sources (issue 21) bring the narrative, dialogue and descriptive styles that
    # the rest lacks: repeat the story-telling ones; cataclysm's item texts are many and terse.
    "endless_sky": 2.0,
    "naev": 2.0,
    "freedroidrpg": 2.0,
    "stellarium": 2.0,
    "cataclysm": 1.0,
}
DEFAULT_HOLDOUT = ("devil",)


def _unit_hash(*parts: str) -> float:
    """A deterministic number in [0, 1) from strings (stable across runs and machines)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def split_of(source: str, doc_id: str, valid_fraction: float, test_fraction: float) -> str:
    """The split of a document, by a hash of its source and id."""
    u = _unit_hash("split", source, doc_id)
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


def copies_of(sentence: str, weight: float) -> int:
    """Copies of a train sentence in the mixture: ``floor(weight)`` plus one more with
    probability ``frac(weight)``, decided by a hash of the sentence."""
    whole = math.floor(weight)
    return whole + int(_unit_hash("copies", sentence) < weight - whole)


def _clean(sentence: str, min_chars: int) -> str | None:
    """One-line sentence, or None if too short or without letters."""
    s = " ".join(sentence.split())
    if len(s) < min_chars or not any(c.isalpha() for c in s):
        return None
    return s


def iter_corpus(
    corpus_dir: str, pairs_path: str | None, stats: ReadStats
) -> Iterator[tuple[str, str, str | None, list[str]]]:
    """Yield ``(source, doc_id, fixed_split, paragraphs)`` for every document.

    The source is the record's ``"source"`` field, else the file name stem (``austen``).
    ``fixed_split`` is the pairs file's own split, None for corpus documents. A pairs record
    contributes its summary as one more paragraph, under the source "debian_pairs".
    """
    files = sorted(glob.glob(os.path.join(os.path.expanduser(corpus_dir), "*.docs.jsonl*")))
    if not files:
        raise FileNotFoundError(f"no *.docs.jsonl[.gz] files in {corpus_dir}")
    for path in files:
        for doc in read_documents(path, stats=stats):
            yield doc.source, doc.id, None, list(doc.paragraphs)
    if pairs_path:
        for doc in read_documents(os.path.expanduser(pairs_path), "pairs", stats=stats):
            split = doc.meta.get("split")
            if split not in SPLITS:
                raise ValueError(f"{pairs_path}: record {doc.id!r} has split {split!r}")
            yield PAIRS_SOURCE, doc.id, split, [*doc.paragraphs, doc.meta["summary"]]


def prepare(
    corpus_dir: str,
    out_dir: str,
    *,
    pairs_path: str | None = None,
    vocab_size: int = 8192,
    model_type: str = "unigram",
    max_chars: int = 256,
    min_chars: int = 8,
    valid_fraction: float = 0.01,
    test_fraction: float = 0.01,
    holdout_sources: Sequence[str] = DEFAULT_HOLDOUT,
    weights: dict[str, float] | None = None,
    seed: int = 0,
    tokenizer_path: str | None = None,
) -> dict:
    """Build the codec's sentence data and tokenizer (see the module docstring).

    Args:
        corpus_dir: Folder of ``*.docs.jsonl.gz`` (``lcm data build-corpus`` output).
        out_dir: Output folder.
        pairs_path: Optional pairs file; its documents and summaries join as "debian_pairs".
        vocab_size: Tokenizer size.
        model_type: "unigram" or "bpe".
        max_chars: Sentence length cap of the segmenter.
        min_chars: Shorter sentences (and ones without letters) are dropped.
        valid_fraction: Share of documents in the valid split.
        test_fraction: Share of documents in the test split.
        holdout_sources: Sources whose documents all go to test (never trained on), besides
            :data:`~lcm.text.heldout.HELDOUT_SOURCES`, which always do.
        weights: Train copies per sentence by source (default :data:`DEFAULT_WEIGHTS`).
        seed: Tokenizer sampling seed.
        tokenizer_path: Reuse this SentencePiece model instead of training one, so that a
            running codec can continue on a widened corpus (its token ids must not change).

    Returns:
        The manifest (also written to ``manifest.json``).
    """
    t0 = time.time()
    out = Path(os.path.expanduser(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    weights = DEFAULT_WEIGHTS if weights is None else weights
    # The unseen-domain sources are test data whatever the caller asked for: a training run
    # that saw them would make that test measure memorization.
    holdout = [*holdout_sources, *sorted(HELDOUT_SOURCES.difference(holdout_sources))]
    stats = ReadStats()
    sources: list[str] = []
    # split -> {sentence: source index}; insertion-ordered, so output order is corpus order.
    found: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    dropped = Counter()
    for source, doc_id, fixed, paragraphs in iter_corpus(corpus_dir, pairs_path, stats):
        if source not in sources:
            sources.append(source)
        src = sources.index(source)
        if source in holdout:
            split = "test"
        else:
            split = fixed or split_of(source, doc_id, valid_fraction, test_fraction)
        for raw in segment_document(paragraphs, max_chars):
            s = _clean(raw, min_chars)
            if s is None:
                dropped["too_short"] += 1
                continue
            first = found[split].get(s)
            if first is None:
                found[split][s] = src
                continue
            dropped["duplicate"] += 1
            # A duplicate counts for the source weighted highest (dictionary quotations also
            # occur inside the down-weighted definitions).
            if weights.get(source, 1.0) > weights.get(sources[first], 1.0):
                found[split][s] = src
    # A sentence seen in training is no test of generalization: keep it in train only.
    for split, earlier in (("valid", ("train",)), ("test", ("train", "valid"))):
        before = len(found[split])
        found[split] = {
            s: i for s, i in found[split].items() if not any(s in found[e] for e in earlier)
        }
        dropped[f"{split}_seen_earlier"] = before - len(found[split])
    kept = {split: list(found[split].items()) for split in SPLITS}
    del found
    copies = np.array(
        [copies_of(s, weights.get(sources[i], 1.0)) for s, i in kept["train"]], np.uint8
    )
    logger.info("segmented in %.0fs: %s", time.time() - t0, stats.summary())

    for split in SPLITS:
        text = "".join(s + "\n" for s, _ in kept[split])
        write_bytes_atomic(out / f"{split}.txt", text.encode())
    if tokenizer_path is not None:
        source_model = Path(os.path.expanduser(tokenizer_path))
        tokenizer = Tokenizer.load(source_model)
        if source_model.resolve() != (out / "tokenizer.model").resolve():
            write_bytes_atomic(out / "tokenizer.model", source_model.read_bytes())
    else:
        with tempfile.NamedTemporaryFile("w", dir=out, suffix=".txt", delete=False) as f:
            for (s, _), c in zip(kept["train"], copies):
                f.write((s + "\n") * int(c))
        try:
            tokenizer = train_tokenizer(
                f.name,
                out / "tokenizer.model",
                vocab_size=vocab_size,
                model_type=model_type,
                seed=seed,
            )
        finally:
            os.unlink(f.name)
    logger.info("tokenizer ready after %.0fs", time.time() - t0)

    token_dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.int32
    n_tokens = {}
    for split in SPLITS:
        sentences = [s for s, _ in kept[split]]
        ids = [
            x
            for i in range(0, len(sentences), 50_000)
            for x in tokenizer.encode(sentences[i : i + 50_000])
        ]
        lengths = np.array([len(x) for x in ids], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat = np.fromiter((t for x in ids for t in x), token_dtype, count=int(offsets[-1]))
        save_npy_atomic(out / f"{split}.tokens.npy", flat)
        save_npy_atomic(out / f"{split}.offsets.npy", offsets)
        sources_of = np.array([i for _, i in kept[split]], np.uint8)
        save_npy_atomic(out / f"{split}.source.npy", sources_of)
        n_tokens[split] = int(offsets[-1])
    save_npy_atomic(out / "train.copies.npy", copies)

    counts = {split: Counter(sources[i] for _, i in kept[split]) for split in SPLITS}
    mixture = defaultdict(int)
    for (_, i), c in zip(kept["train"], copies):
        mixture[sources[i]] += int(c)
    manifest = {
        "sources": sources,
        "sentences": {split: len(kept[split]) for split in SPLITS},
        "tokens": n_tokens,
        "per_source": {
            src: {
                **{split: counts[split][src] for split in SPLITS},
                "train_mixture": mixture[src],
            }
            for src in sources
        },
        "train_mixture": int(copies.sum()),
        "dropped": dict(dropped),
        "read_stats": stats.as_dict(),
        "settings": {
            "corpus_dir": corpus_dir,
            "pairs_path": pairs_path,
            "vocab_size": tokenizer.vocab_size,
            "model_type": model_type,
            "max_chars": max_chars,
            "min_chars": min_chars,
            "valid_fraction": valid_fraction,
            "test_fraction": test_fraction,
            "holdout_sources": holdout,
            "weights": {src: weights.get(src, 1.0) for src in sources},
            "seed": seed,
            "tokenizer_path": tokenizer_path,
        },
        "seconds": round(time.time() - t0, 1),
    }
    write_bytes_atomic(out / "manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


class CodecBatchSource:
    """Length-bucketed batches of one split, a pure function of (seed, step, process index).

    Each curriculum stage (one per bucket; a single stage without a curriculum) reads an
    endless stream of epoch permutations of its eligible sentences (train sentences repeated
    by their source weight). The stream is cut into pools of ``pool_batches * batch_size``
    sentences; a pool is sorted by length and cut into ``pool_batches`` batches, visited in a
    random order, each padded to the smallest bucket that holds its longest sentence.

    Batches are ``{"tokens": int32 [local_batch, bucket]}``: ids, EOS, then PAD.

    Args:
        cfg: Data config.
        model_cfg: Model config (its vocabulary size and ``max_len`` are checked).
        batch_size: Global batch size.
        seed: Data seed.
        process_index: This process's index.
        process_count: Number of processes.

    Raises:
        FileNotFoundError: If the prepared data is missing.
        ValueError: If the data, the tokenizer and the model config disagree.
    """

    def __init__(
        self,
        cfg: CodecDataConfig,
        model_cfg: CodecModelConfig,
        *,
        batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
    ):
        root = Path(os.path.expanduser(cfg.data_dir))
        files = [f"{cfg.split}.tokens.npy", f"{cfg.split}.offsets.npy", "tokenizer.model"]
        for name in files:
            if not (root / name).is_file():
                raise FileNotFoundError(
                    f"{root / name} not found; prepare the data with "
                    f"`python tools/prepare_codec_data.py --corpus CORPUS_DIR --out {root}`"
                )
        vocab = Tokenizer.load(root / "tokenizer.model").vocab_size
        if vocab != model_cfg.vocab_size:
            raise ValueError(
                f"{root / 'tokenizer.model'} has {vocab} ids but model.vocab_size is "
                f"{model_cfg.vocab_size}"
            )
        if cfg.buckets[-1] > model_cfg.max_len:
            raise ValueError(
                f"data bucket {cfg.buckets[-1]} exceeds model.max_len {model_cfg.max_len}"
            )
        if batch_size % process_count:
            raise ValueError(f"batch_size {batch_size} not divisible by {process_count} processes")
        self.cfg = cfg
        self.batch_size = batch_size
        self.seed = seed
        self.local = batch_size // process_count
        self.row_start = process_index * self.local
        self.tokens = np.load(root / files[0], mmap_mode="r")
        self.offsets = np.load(root / files[1])
        self.lengths = np.diff(self.offsets) + 1  # + EOS
        copies_file = root / "train.copies.npy"
        copies = (
            np.load(copies_file)
            if cfg.split == "train" and copies_file.is_file()
            else np.ones(len(self.lengths), np.uint8)
        )
        # Curriculum stage k admits sentences up to buckets[k]; it starts when the linearly
        # growing length limit reaches that bucket.
        limits = cfg.buckets if cfg.curriculum_steps else cfg.buckets[-1:]
        first, last = cfg.buckets[0], cfg.buckets[-1]
        self.stage_starts = [
            round(cfg.curriculum_steps * (b - first) / max(last - first, 1)) for b in limits
        ]
        self.eligible = []
        for limit in limits:
            ids = np.flatnonzero(self.lengths <= limit)
            self.eligible.append(np.repeat(ids, copies[ids]))
        if not len(self.eligible[-1]):
            raise ValueError(f"no {cfg.split} sentence fits in {cfg.buckets[-1]} tokens")
        for limit, ids in zip(limits, self.eligible):
            if not len(ids):
                raise ValueError(f"curriculum stage of length {limit} has no sentences")
        too_long = int(np.sum(self.lengths > cfg.buckets[-1]))
        if too_long:
            logger.info(
                "%d %s sentences exceed %d tokens and are left out",
                too_long,
                cfg.split,
                cfg.buckets[-1],
            )
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}
        self._pool_cache: dict[tuple[int, int], np.ndarray] = {}

    def _permutation(self, stage: int, epoch: int) -> np.ndarray:
        key = (stage, epoch)
        if key not in self._perm_cache:
            self._perm_cache = {
                key: np.random.default_rng([self.seed, 0, stage, epoch]).permutation(
                    len(self.eligible[stage])
                )
            }
        return self._perm_cache[key]

    def _stream(self, stage: int, start: int, count: int) -> np.ndarray:
        """Positions ``[start, start + count)`` of the stage's stream of epoch permutations."""
        n = len(self.eligible[stage])
        parts = []
        while count:
            epoch, offset = divmod(start, n)
            take = min(n - offset, count)
            parts.append(
                self.eligible[stage][self._permutation(stage, epoch)[offset : offset + take]]
            )
            start, count = start + take, count - take
        return np.concatenate(parts)

    def _pool(self, stage: int, pool: int) -> np.ndarray:
        """The pool's batches of sentence ids, [pool_batches, batch_size], in visiting order."""
        key = (stage, pool)
        if key not in self._pool_cache:
            size = self.cfg.pool_batches * self.batch_size
            ids = self._stream(stage, pool * size, size)
            ids = ids[np.argsort(self.lengths[ids], kind="stable")]
            batches = ids.reshape(self.cfg.pool_batches, self.batch_size)
            order = np.random.default_rng([self.seed, 1, stage, pool]).permutation(len(batches))
            self._pool_cache = {key: batches[order]}
        return self._pool_cache[key]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of the global batch at ``step``: ``{"tokens": [local, L]}``."""
        stage = int(np.searchsorted(self.stage_starts, step, side="right")) - 1
        pool, j = divmod(step - self.stage_starts[stage], self.cfg.pool_batches)
        rows = self._pool(stage, pool)[j]
        width = next(b for b in self.cfg.buckets if b >= self.lengths[rows].max())
        tokens = np.zeros((self.local, width), np.int32)
        for r, i in enumerate(rows[self.row_start : self.row_start + self.local]):
            seq = self.tokens[self.offsets[i] : self.offsets[i + 1]]
            tokens[r, : len(seq)] = seq
            tokens[r, len(seq)] = EOS_ID
        return {"tokens": tokens}


def main(argv: Sequence[str] | None = None) -> int:
    """``python tools/prepare_codec_data.py``: build the codec data (see ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="prepare_codec_data",
        description="Segment, split, weight and tokenize the corpus for codec training.",
    )
    parser.add_argument("--corpus", required=True, help="folder of *.docs.jsonl.gz files")
    parser.add_argument("--pairs", help="pairs file (its train documents/summaries join)")
    parser.add_argument("--out", required=True, help="output folder, e.g. ~/data/codec")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram")
    parser.add_argument("--max-chars", type=int, default=256)
    parser.add_argument("--min-chars", type=int, default=8)
    parser.add_argument("--valid-fraction", type=float, default=0.01)
    parser.add_argument("--test-fraction", type=float, default=0.01)
    parser.add_argument(
        "--holdout",
        default=",".join(DEFAULT_HOLDOUT),
        help="comma-separated sources kept entirely for test (default: %(default)s; "
        f"{', '.join(sorted(HELDOUT_SOURCES))} always are)",
    )
    parser.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="SOURCE=W",
        help="train copies per sentence of a source (overrides the default table)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tokenizer",
        help="reuse this tokenizer.model instead of training one (continue a codec run)",
    )
    args = parser.parse_args(argv)
    weights = dict(DEFAULT_WEIGHTS)
    for item in args.weight:
        name, _, value = item.partition("=")
        try:
            weights[name] = float(value)
        except ValueError:
            parser.error(f"--weight {item!r}: expected SOURCE=NUMBER")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifest = prepare(
        args.corpus,
        args.out,
        pairs_path=args.pairs,
        vocab_size=args.vocab_size,
        model_type=args.model_type,
        max_chars=args.max_chars,
        min_chars=args.min_chars,
        valid_fraction=args.valid_fraction,
        test_fraction=args.test_fraction,
        holdout_sources=tuple(s for s in args.holdout.split(",") if s),
        weights=weights,
        seed=args.seed,
        tokenizer_path=args.tokenizer,
    )
    print(f"{'source':<22}{'train':>9}{'mixture':>9}{'valid':>8}{'test':>8}")
    for src, c in manifest["per_source"].items():
        print(f"{src:<22}{c['train']:>9}{c['train_mixture']:>9}{c['valid']:>8}{c['test']:>8}")
    s = manifest["sentences"]
    print(
        f"{'total':<22}{s['train']:>9}{manifest['train_mixture']:>9}{s['valid']:>8}{s['test']:>8}"
    )
    print(f"tokens: {manifest['tokens']}; wrote {args.out} in {manifest['seconds']}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

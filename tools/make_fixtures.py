"""Make the small test fixtures in tests/fixtures/ from the shared data (deterministic).

Usage (from the repository root, with the shared data at ../shared/data)::

    python tools/make_fixtures.py [--data ../shared/data] [--out tests/fixtures]

Writes:

* ``corpus_small.docs.jsonl.gz``: 200 documents sampled from the public-domain corpus files
  (austen, bible_web, devil) plus python_doc and the debian_* manuals, each record with an
  added ``"source"`` field and long documents cut to their first paragraphs.
* ``pairs_small.jsonl.gz``: 300 records of ``pairs/debian_bookworm.jsonl.gz`` (200 train,
  50 valid, 50 test), in their original order.
* ``tiny.txt``: a short hand-written plain text document with tricky segmentation cases.

The gzip files are written with mtime 0, so re-running gives byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
from pathlib import Path

SEED = 1234
# source file stem -> documents to sample
CORPUS_PLAN = {
    "austen": 12,
    "bible_web": 30,
    "devil": 80,
    "python_doc": 40,
    "debian_handbook": 8,
    "debian_policy": 6,
    "debian_reference": 6,
    "debian_faq": 6,
    "debian_history": 6,
    "developers_reference": 6,
}
MAX_PARAGRAPHS = 12  # keep long chapters small; the fixture stays well under 300 KB
PAIRS_PLAN = {"train": 200, "valid": 50, "test": 50}

TINY_TXT = """\
Dr. Smith went to Washington, D.C. on Monday. He met J. R. R. Tolkien's heirs, e.g. \
Christopher, at 3.14 p.m. sharp.
"Is it true?" she asked. Version 2.0 was released on example.com... Nobody noticed.

Install it with pip, then run setup.py:
- download the archive
- unpack it into a new
  directory
- run the tests

The U.S. Army agreed. That was all.
"""


def _read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_jsonl_gz(path: Path, records: list[dict]) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        for rec in records:
            gz.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
    path.write_bytes(buf.getvalue())


def make_corpus(data: Path, rng: random.Random) -> list[dict]:
    """Sample documents per source, keeping each source's original order."""
    out = []
    for stem, n in CORPUS_PLAN.items():
        docs = _read_jsonl_gz(data / "corpus" / f"{stem}.docs.jsonl.gz")
        docs = [d for d in docs if any(p.strip() for p in d["paragraphs"])]
        for i in sorted(rng.sample(range(len(docs)), min(n, len(docs)))):
            d = docs[i]
            out.append(
                {
                    "id": d["id"],
                    "title": d.get("title", ""),
                    "source": stem,
                    "paragraphs": d["paragraphs"][:MAX_PARAGRAPHS],
                }
            )
    return out


def make_pairs(data: Path, rng: random.Random) -> list[dict]:
    """Sample records per split, keeping the file order."""
    recs = _read_jsonl_gz(data / "pairs" / "debian_bookworm.jsonl.gz")
    keep: set[int] = set()
    for split, n in PAIRS_PLAN.items():
        idx = [i for i, r in enumerate(recs) if r["split"] == split]
        keep.update(rng.sample(idx, n))
    return [recs[i] for i in sorted(keep)]


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=repo.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=repo / "tests" / "fixtures")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    corpus = make_corpus(args.data, rng)
    _write_jsonl_gz(args.out / "corpus_small.docs.jsonl.gz", corpus)
    pairs = make_pairs(args.data, rng)
    _write_jsonl_gz(args.out / "pairs_small.jsonl.gz", pairs)
    (args.out / "tiny.txt").write_text(TINY_TXT, encoding="utf-8")
    for name in ("corpus_small.docs.jsonl.gz", "pairs_small.jsonl.gz", "tiny.txt"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size / 1024:.1f} KiB")
    print(f"{len(corpus)} documents, {len(pairs)} pairs")


if __name__ == "__main__":
    main()

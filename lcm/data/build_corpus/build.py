"""``lcm data build-corpus``: the build steps and their command line."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from lcm.data.build_corpus import debian_pairs, fetch, sources, writer
from lcm.data.build_corpus.fetch import AptWorkspace

PAIRS_FILE = "debian_bookworm.jsonl.gz"
EXPECTED_CODENAME = "bookworm"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lcm data build-corpus",
        description="Rebuild the English corpus and the Debian summary/document pairs from "
        "Debian packages. Needs a Debian (bookworm) system with apt-get and dpkg-deb and "
        "access to a Debian archive; downloads about 1.3 GB and unpacks about 2.8 GB into the "
        "work dir (the game-data sources are most of it). Outputs: "
        "OUT/pairs/debian_bookworm.jsonl.gz and OUT/corpus/<source>.docs.jsonl.gz.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("data"), help="output dir (default: %(default)s)"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="download/unpack dir (default: OUT/.build)"
    )
    parser.add_argument(
        "--sources",
        default=None,
        help="comma-separated corpus sources (default: all): " + ",".join(sources.SOURCES),
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--pairs-only", action="store_true", help="build only the pairs")
    only.add_argument("--corpus-only", action="store_true", help="build only the corpus")
    parser.add_argument(
        "--keep-work", action="store_true", help="keep the work dir after a successful build"
    )
    args = parser.parse_args(argv)
    if args.sources is None:
        args.sources = list(sources.SOURCES)
    else:
        args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
        unknown = [s for s in args.sources if s not in sources.SOURCES]
        if unknown:
            parser.error(
                f"unknown source(s): {', '.join(unknown)}; choose from {', '.join(sources.SOURCES)}"
            )
    if args.work is None:
        args.work = args.out / ".build"
    return args


def _build_pairs(ws: AptWorkspace, out: Path) -> dict[str, int]:
    """Build and write the pairs file; return record counts (total and per split)."""
    start = time.monotonic()
    _log("[pairs] joining apt-cache dumpavail with Translation-en")
    translations = (fetch.read_index(p) for p in ws.translation_files())
    records = debian_pairs.build_pairs(ws.dumpavail(), translations)
    path = out / "pairs" / PAIRS_FILE
    writer.write_jsonl_gz(path, records)
    counts = Counter(r["split"] for r in records)
    counts["total"] = len(records)
    _log(
        f"[pairs] {len(records)} records (train {counts['train']} / valid {counts['valid']} / "
        f"test {counts['test']}) -> {path} ({time.monotonic() - start:.1f}s)"
    )
    return dict(counts)


def _build_corpus(ws: AptWorkspace, out: Path, names: list[str]) -> dict[str, int]:
    """Download, unpack and extract each source; return docs per source."""
    selected = [sources.SOURCES[n] for n in names]
    packages = list(dict.fromkeys(p for s in selected for p in s.packages))
    _log(f"[corpus] {len(selected)} sources from {len(packages)} Debian packages")
    fetched = ws.download(packages)
    if fetched:
        _log(f"[corpus] downloaded {' '.join(fetched)}")
    docs: dict[str, int] = {}
    for i, source in enumerate(selected, 1):
        start = time.monotonic()
        for package in source.packages:
            ws.unpack(package)
        path = out / "corpus" / f"{source.name}.docs.jsonl.gz"
        try:
            docs[source.name] = writer.write_jsonl_gz(path, source.extract(ws.unpack_root))
        except (OSError, ValueError) as e:  # package layout not as expected
            raise fetch.BuildError(f"extracting source {source.name!r} failed: {e}") from e
        _log(
            f"[{i}/{len(selected)}] {source.name}: {docs[source.name]} docs "
            f"({time.monotonic() - start:.1f}s)"
        )
    return docs


HELDOUT_NOTE = "HELD-OUT: test only, never train on it"


def _summary_table(docs: dict[str, int], pairs: dict[str, int] | None) -> str:
    rows = []
    for name, n in docs.items():
        source = sources.SOURCES[name]
        # The held-out sources sit in the same corpus dir as the others: say so where the
        # user first sees them, so that no one globs them into a training run by accident.
        note = f"{source.license}  [{HELDOUT_NOTE}]" if source.heldout else source.license
        rows.append((name, f"{n:,}", note))
    if docs:
        rows.append(("total", f"{sum(docs.values()):,}", ""))
    if pairs is not None:
        split = f"train {pairs.get('train', 0):,} / valid {pairs.get('valid', 0):,} / "
        split += f"test {pairs.get('test', 0):,}"
        rows.append(("debian pairs", f"{pairs['total']:,}", split))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'source':<{width}}  {'docs':>8}  license / splits"]
    lines += [f"{a:<{width}}  {b:>8}  {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines)


def _clean_work(ws: AptWorkspace) -> None:
    """Remove what the build created in the work dir (never the user's other files)."""
    for sub in (ws.apt_dir, ws.deb_dir, ws.unpack_root):
        shutil.rmtree(sub, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty: something else lives there
        ws.work.rmdir()


def main(argv: list[str] | None = None) -> int:
    """Run ``lcm data build-corpus``.

    Args:
        argv: Command-line arguments after ``build-corpus`` (default: ``sys.argv[1:]``).

    Returns:
        Process exit status: 0 on success, 1 when a build step fails.
    """
    args = _parse_args(argv)
    ws = fetch.AptWorkspace(args.work)
    pairs = None
    docs: dict[str, int] = {}
    try:
        fetch.require_tools("apt-get", "apt-cache", *(() if args.pairs_only else ("dpkg-deb",)))
        _log(f"[apt] apt-get update into {ws.apt_dir} (private; /etc/apt is only read)")
        ws.update()
        codenames = ws.codenames()
        if EXPECTED_CODENAME not in codenames:
            _log(
                f"warning: the apt sources are {', '.join(sorted(codenames)) or 'unknown'}, "
                f"not {EXPECTED_CODENAME}; some packages may be missing and the data will "
                "differ from the reference build"
            )
        if not args.corpus_only:
            pairs = _build_pairs(ws, args.out)
        if not args.pairs_only:
            docs = _build_corpus(ws, args.out, args.sources)
    except fetch.BuildError as e:
        _log(f"error: {e}")
        if ws.work.exists():
            _log(f"(work dir kept for a re-run: {ws.work})")
        return 1
    print(_summary_table(docs, pairs))
    if not args.keep_work:
        _clean_work(ws)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``lcm bench``: the benchmarks of :mod:`lcm.bench`."""

from __future__ import annotations

from collections.abc import Sequence

from lcm.bench import main


def bench_main(argv: Sequence[str]) -> int:
    """``lcm bench PART ...``: :func:`lcm.bench.main` (see ``lcm bench -h``)."""
    return int(main(list(argv)) or 0)

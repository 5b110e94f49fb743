"""``lcm bench``: the benchmarks of a source checkout."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path


def bench_main(argv: Sequence[str]) -> int:
    """``lcm bench PART ...``: ``tools/bench.py`` of this source checkout (see its ``-h``)."""
    path = Path(__file__).resolve().parents[2] / "tools" / "bench.py"
    if not path.is_file():
        print(
            f"lcm bench: {path} not found; the benchmarks run from a source checkout "
            "(git clone, then pip install -e '.[bench]')",
            file=sys.stderr,
        )
        return 2
    spec = importlib.util.spec_from_file_location("lcm_tools_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return int(module.main(list(argv)) or 0)

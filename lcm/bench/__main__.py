"""``python -m lcm.bench``: the benchmarks, as ``lcm bench``."""

from lcm.bench import main

raise SystemExit(main())

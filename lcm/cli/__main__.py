"""``python -m lcm.cli``: the ``lcm`` command."""

from lcm.cli import main

raise SystemExit(main())

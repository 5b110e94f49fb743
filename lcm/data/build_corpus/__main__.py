"""Allow ``python -m lcm.data.build_corpus``."""

import sys

from lcm.data.build_corpus.build import main

sys.exit(main())

"""``python -m flows.demo``: ``make demo``."""

import sys

from flows.demo.run import main

sys.exit(main())

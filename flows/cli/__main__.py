"""``python -m flows.cli``: the ``divmon`` command."""

import sys

from flows.cli.divmon import main

sys.exit(main())

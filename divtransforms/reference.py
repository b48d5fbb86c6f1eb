"""Old import path of :mod:`divtransforms.beam.reference` (moved in issue 24), kept for existing
code: this name is the very same module object, so imports and ``mock.patch`` targets through it
keep working."""

import sys

from divtransforms.beam import reference as _module

sys.modules[__name__] = _module

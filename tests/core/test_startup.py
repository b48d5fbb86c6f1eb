"""The command-line start-up helpers of ``pipelines.startup`` (each case in a fresh process: the
allocator's settings are process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest

FAULTS = r"""
import resource, sys
import numpy as np
from pipelines.startup import reuse_freed_memory
tuned = reuse_freed_memory() if sys.argv[1] == "tuned" else False
x = np.ones(1 << 17)  # 1 MiB: above glibc's default mmap threshold
def step():  # a batch's temporaries: several alive at once, all freed at the end
    a = x * 2.0
    b = a + 1.0
    c = (b * a).astype(np.int64)
    return int(c[0])
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    step()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_temporaries_are_reused_instead_of_faulted_in_again():
    """50 rounds of three 1 MiB temporaries alive at once: with glibc's defaults the freed heap
    top is trimmed, so every round faults its pages in again (256 per MiB); once tuned the
    rounds reuse the same memory."""
    out = {}
    for mode in ("default", "tuned"):
        proc = subprocess.run(
            [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True
        )
        tuned, faults = proc.stdout.split()
        out[mode] = (tuned == "True", int(faults))
    assert out["tuned"][0] is True
    assert out["default"][1] >= 50 * 200, out  # the cost being avoided is real here
    assert out["tuned"][1] < 500, out

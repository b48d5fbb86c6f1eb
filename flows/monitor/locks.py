"""The errors of the monitor's state and run lock, shared by the local lock
(``flows.monitor.state``) and the lease on a bucket (``flows.monitor.lease``) without either
importing the other at load time.
"""

from __future__ import annotations


class StateError(ValueError):
    """The state file is unreadable or from an incompatible version."""


class LockHeld(StateError):
    """Another run holds the monitor's run lock."""
